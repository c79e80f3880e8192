"""Known-answer cases for the box protocol and the fast path against the reference path."""

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from wsol._threshold_sweep import threshold_ious
from wsol.localize import (
    InvalidCAMError,
    box_iou,
    boxes_from_scoremap,
    normalize_cams,
    prepare_scoremaps,
    resize_boxes,
    resize_cams,
    threshold_grid,
    threshold_ious_reference,
    to_uint8,
)


def test_threshold_grid_is_the_reference_arange():
    grid = threshold_grid(0.001)
    assert len(grid) == 1000 and grid[0] == 0.0
    np.testing.assert_array_equal(grid, np.arange(0, 1, 0.001))
    with pytest.raises(ValueError):
        threshold_grid(0)


def test_iou_plus_one_convention_and_degenerate():
    assert box_iou([[0, 0, 9, 9]], [[0, 0, 9, 9]])[0, 0] == 1.0
    # 10x10 vs 10x5 sharing 10x5 pixels -> 50 / 100
    assert box_iou([[0, 0, 9, 9]], [[0, 0, 9, 4]])[0, 0] == 0.5
    assert box_iou([[0, 0, 0, 0]], [[0, 0, 0, 0]])[0, 0] == 1.0  # one pixel each
    assert box_iou([[0, 0, 4, 4]], [[6, 6, 9, 9]])[0, 0] == 0.0
    # the reference's check_box_convention raises on x1 < x0 (calculate_multiple_iou calls it)
    with pytest.raises(ValueError, match="does not follow x0 y0 x1 y1"):
        box_iou([[5, 5, 3, 3]], [[5, 5, 9, 9]])
    with pytest.raises(ValueError, match="non-negative"):
        box_iou([[0, 0, 9, 9]], [[-1, 0, 9, 9]])
    with pytest.raises(ValueError, match="shape"):
        box_iou([[0, 0, 9]], [[0, 0, 9, 9]])


def test_resize_boxes_truncates_like_resize_bbox():
    out = resize_boxes([[10, 20, 99, 149]], (100, 150))
    assert out.tolist() == [
        [int(10 * 224 / 100), int(20 * 224 / 150), int(99 * 224 / 100), int(149 * 224 / 150)]
    ]


def test_normalisation_constant_zero_and_idempotent():
    cams = np.stack([np.full((4, 4), 3.0), np.zeros((4, 4)), np.arange(16.0).reshape(4, 4)])
    out = normalize_cams(cams.copy())
    assert (out[0] == 0).all() and (out[1] == 0).all()
    assert out[2].min() == 0 and out[2].max() == 1
    np.testing.assert_array_equal(normalize_cams(out.copy()), out)


@pytest.mark.parametrize(
    "bad,words",
    [(np.full((4, 4), np.nan), "NaN"), (np.full((4, 4), np.inf), "inf"), (np.zeros(4), "2-D")],
)
def test_invalid_cams_name_the_image(bad, words):
    with pytest.raises(InvalidCAMError, match=f"img_7.*{words}|{words}"):
        prepare_scoremaps([np.zeros((4, 4)), bad], ["img_1", "img_7"])
    with pytest.raises(InvalidCAMError, match="img_7"):
        prepare_scoremaps([np.zeros((4, 4)), bad], ["img_1", "img_7"])


def test_batched_resize_equals_one_by_one():
    rng = np.random.default_rng(0)
    cams = [rng.random((7, 9)) for _ in range(5)] + [rng.random((14, 14))]
    together = resize_cams(cams)
    for cam, out in zip(cams, together):
        np.testing.assert_array_equal(
            out, cv2.resize(cam, (224, 224), interpolation=cv2.INTER_CUBIC)
        )


def _ious(scoremap, gt, thresholds, multi):
    return threshold_ious(to_uint8(scoremap[None]), [np.asarray(gt)], thresholds, multi)[0]


def test_unimodal_blob_box():
    sm = np.zeros((20, 20))
    sm[5:10, 3:12] = 1.0
    boxes = boxes_from_scoremap(sm, [0.5])[0]
    assert boxes.tolist() == [[3, 5, 12, 10]]  # x1 = x + w (one past the last column), capped
    gt = [[3, 5, 12, 10]]
    assert _ious(sm, gt, np.array([0.5]), False)[0] == 1.0


def test_multimodal_single_keeps_largest_multi_keeps_all():
    sm = np.zeros((30, 30))
    sm[2:6, 2:6] = 1.0  # small blob
    sm[10:25, 10:25] = 1.0  # large blob
    t = np.array([0.5])
    small_gt = [[2, 2, 6, 6]]
    assert _ious(sm, small_gt, t, multi=False)[0] < 0.1  # the largest contour misses the small GT
    assert _ious(sm, small_gt, t, multi=True)[0] == 1.0
    # two GT boxes: the best IoU over all pairs counts
    assert _ious(sm, [[0, 0, 1, 1], [10, 10, 25, 25]], t, multi=False)[0] == 1.0


def test_hole_contours_count_in_multi_mode():
    sm = np.zeros((30, 30))
    sm[2:28, 2:28] = 1.0
    sm[8:20, 8:20] = 0.0  # a hole: RETR_TREE gives it a contour of its own
    ref = boxes_from_scoremap(sm, [0.5], multi_contour=True)[0].tolist()
    assert sorted(ref) == sorted([[2, 2, 28, 28], [7, 7, 21, 21]])
    hole_gt = [[7, 7, 21, 21]]
    assert _ious(sm, hole_gt, np.array([0.5]), multi=True)[0] == 1.0


def test_zero_and_constant_cams_give_the_empty_box():
    grid = threshold_grid(0.01)
    # at the evaluation size (a low-resolution constant CAM is not constant after the bicubic
    # resize: float rounding leaves ~1e-16 ripples that the reference normalises too)
    for cam in (np.zeros((224, 224)), np.full((224, 224), 0.7)):
        sm = prepare_scoremaps([cam], ["x"])[0]
        assert all(b.tolist() == [[0, 0, 0, 0]] for b in boxes_from_scoremap(sm, grid))
        gt = np.array([[0, 0, 0, 0]])  # a GT on the corner pixel matches the empty box exactly
        assert (_ious(sm, gt, grid, False) == 1.0).all()
        assert (_ious(sm, [[3, 3, 7, 7]], grid, True) == 0.0).all()


small_maps = st.integers(2, 24).flatmap(
    lambda h: st.integers(2, 24).flatmap(
        lambda w: (
            arrays(np.uint8, (h, w), elements=st.sampled_from([0, 1, 60, 128, 200, 254, 255]))
            | arrays(np.uint8, (h, w))
        )
    )
)


@st.composite
def maps_and_boxes(draw):
    img = draw(small_maps)
    h, w = img.shape
    n = draw(st.integers(1, 3))
    boxes = []
    for _ in range(n):
        x0, x1 = sorted(draw(st.integers(0, w)) for _ in range(2))
        y0, y1 = sorted(draw(st.integers(0, h)) for _ in range(2))
        boxes.append([x0, y0, x1, y1])
    return img.astype(np.float64) / 255.0, np.array(boxes)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(maps_and_boxes(), st.booleans(), st.sampled_from([0.01, 0.001, 0.037]))
def test_fast_path_equals_reference_path(case, multi, interval):
    scoremap, gt = case
    grid = threshold_grid(interval)
    ref = threshold_ious_reference(scoremap, gt, grid, multi)
    fast = _ious(scoremap, gt, grid, multi)
    np.testing.assert_array_equal(fast, ref)


def test_fast_path_equals_reference_on_smooth_224_cams():
    rng = np.random.default_rng(1)
    cams = [rng.random((7, 7)) ** 3 for _ in range(6)] + [rng.random((28, 28)) for _ in range(2)]
    maps = prepare_scoremaps(cams, [str(i) for i in range(len(cams))])
    gts = [np.array([[20, 30, 150, 200], [100, 10, 220, 90]])] * len(cams)
    grid = threshold_grid(0.001)
    for multi in (False, True):
        fast = threshold_ious(to_uint8(maps), gts, grid, multi)
        ref = np.stack([threshold_ious_reference(m, g, grid, multi) for m, g in zip(maps, gts)])
        np.testing.assert_array_equal(fast, ref)


@pytest.mark.parametrize("count", [127, 128, 129, 300, 513])
def test_resize_cams_handles_any_batch_size(count):
    # OpenCV 5 resizes at most 128 channels per call (4.x: 512); batches above that must work
    # and give each CAM exactly what resizing it alone gives
    from wsol.localize import resize_cams

    rng = np.random.default_rng(count)
    cams = rng.random((count, 7, 7))
    out = resize_cams(cams, (224, 224))
    assert out.shape == (count, 224, 224)
    for k in (0, count // 2, count - 1):
        alone = cv2.resize(cams[k], (224, 224), interpolation=cv2.INTER_CUBIC)
        np.testing.assert_array_equal(out[k], alone)
