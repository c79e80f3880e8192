import numpy as np
import pytest
from PIL import Image

from wsol.metrics import (
    BoxAccumulator,
    GroundTruth,
    LocalizationEvaluator,
    MaskAccumulator,
    Protocol,
)


def _gt(boxes, size=(224, 224), **kw):
    return GroundTruth(np.asarray(boxes, dtype=float).reshape(-1, 4), size, **kw)


def blob(y0, y1, x0, x1, size=224):
    m = np.zeros((size, size))
    m[y0:y1, x0:x1] = 1.0
    return m


def test_max_box_acc_counts_images_and_picks_best_threshold():
    gt = {"a": _gt([[10, 10, 110, 110]]), "b": _gt([[50, 50, 60, 60]])}
    acc = BoxAccumulator(gt, Protocol(cam_curve_interval=0.01))
    maps = np.stack([blob(10, 111, 10, 111), blob(100, 200, 100, 200)])
    acc.update(maps, ["a", "b"], top1_correct=[True, False], top5_correct=[True, True])
    out = acc.compute(fixed_threshold=0.5)
    assert out["MaxBoxAcc"] == 50.0  # a is right, b is not
    assert out["box"]["multi"]["70"]["max_box_acc"] == 50.0
    assert out["MaxBoxAccV2"] == 50.0
    assert out["loc"]["gt_known_loc@best"] == 50.0
    assert out["loc"]["top1_loc@best"] == 50.0 and out["loc"]["top5_loc@fixed"] == 50.0
    assert out["classification"] == {"top1_acc": 50.0, "top5_acc": 100.0}
    assert out["loc"]["best_threshold"] == 0.0
    assert len(out["curves"]["single"]["50"]) == 100


def test_top1_loc_needs_the_right_class():
    gt = {"a": _gt([[10, 10, 110, 110]])}
    acc = BoxAccumulator(gt, Protocol(cam_curve_interval=0.1))
    acc.update(blob(10, 111, 10, 111)[None], ["a"], top1_correct=[False], top5_correct=[True])
    out = acc.compute()
    assert out["loc"]["gt_known_loc@best"] == 100.0
    assert out["loc"]["top1_loc@best"] == 0.0 and out["loc"]["top5_loc@best"] == 100.0


def test_gt_boxes_are_rescaled_from_the_original_size():
    gt = {"a": _gt([[0, 0, 49, 24]], size=(100, 50))}  # left half, top half of a 100x50 image
    acc = BoxAccumulator(gt, Protocol(cam_curve_interval=0.1))
    acc.update(blob(0, 110, 0, 110)[None], ["a"])  # 224 * 49/100 = 109.76 -> 109
    assert acc.compute()["MaxBoxAcc"] == 100.0


def test_merge_equals_one_pass_and_engines_agree():
    rng = np.random.default_rng(0)
    ids = [f"i{k}" for k in range(6)]
    gt = {
        i: _gt(
            [
                [
                    rng.integers(0, 100),
                    rng.integers(0, 100),
                    rng.integers(120, 224),
                    rng.integers(120, 224),
                ]
            ]
        )
        for i in ids
    }
    cams = [rng.random((7, 7)) ** 2 for _ in ids]
    p = Protocol(cam_curve_interval=0.01)
    whole = LocalizationEvaluator(gt, p)
    whole.update(cams, ids)
    left, right = LocalizationEvaluator(gt, p), LocalizationEvaluator(gt, p)
    left.update(cams[:2], ids[:2])
    right.update(cams[2:], ids[2:])
    assert left.merge(right).compute() == whole.compute()
    reference = LocalizationEvaluator(gt, p, engine="reference")
    reference.update(cams, ids)
    assert reference.compute() == whole.compute()


def test_protocol_validation():
    with pytest.raises(ValueError, match="include 50"):
        Protocol(iou_thresholds=(30, 70))
    with pytest.raises(KeyError, match="not in the ground truth"):
        BoxAccumulator({}, Protocol(cam_curve_interval=0.1)).update(
            np.zeros((1, 224, 224)), ["nope"]
        )


def _save_mask(path, array):
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


def test_pxap_perfect_and_inverted_and_ignore(tmp_path):
    mask = np.zeros((224, 224), np.uint8)
    mask[50:150, 60:160] = 255
    m = _save_mask(tmp_path / "m.png", mask)
    gt = {"a": _gt([], mask_paths=(m,))}
    p = Protocol(cam_curve_interval=0.01)
    perfect = MaskAccumulator(gt, p)
    perfect.update((mask / 255.0)[None], ["a"])
    assert perfect.compute()["PxAP"] == pytest.approx(100.0)
    inverted = MaskAccumulator(gt, p)
    inverted.update((1 - mask / 255.0)[None], ["a"])
    # precision is the foreground share (100*100 / 224^2) wherever recall grows
    assert inverted.compute()["PxAP"] == pytest.approx(100 * 100 * 100 / 224**2, rel=1e-6)
    # an ignore region covering all the background makes even a flat map perfect
    ignore = _save_mask(tmp_path / "i.png", np.full((224, 224), 255))
    flat = MaskAccumulator({"a": _gt([], mask_paths=(m,), ignore_path=ignore)}, p)
    flat.update(np.full((1, 224, 224), 0.5), ["a"])
    assert flat.compute()["PxAP"] == pytest.approx(100.0)


def test_pxap_histogram_equals_numpy_histogram(tmp_path):
    rng = np.random.default_rng(3)
    acc = MaskAccumulator({}, Protocol(cam_curve_interval=0.001))
    values = np.concatenate([rng.random(5000), [0.0, 1.0, 0.5, 0.999, 0.0005]])
    np.testing.assert_array_equal(acc._histogram(values), np.histogram(values, bins=acc.edges)[0])


def test_pxap_union_of_instances(tmp_path):
    a = np.zeros((224, 224), np.uint8)
    a[:, :100] = 255
    b = np.zeros((224, 224), np.uint8)
    b[:, 120:] = 255
    gt = {
        "x": _gt(
            [], mask_paths=(_save_mask(tmp_path / "a.png", a), _save_mask(tmp_path / "b.png", b))
        )
    }
    acc = MaskAccumulator(gt, Protocol(cam_curve_interval=0.01))
    acc.update(((a | b) / 255.0)[None], ["x"])
    assert acc.compute()["PxAP"] == pytest.approx(100.0)


def test_cutmix2019_protocol_fixes_threshold_015_and_the_largest_contour():
    from wsol.metrics import PROTOCOLS, named_protocol

    # CutMix paper, Appendix B: CAM thresholded at 0.15 of its max, box around the largest
    # connected component. Image a: the GT object is the small, strong blob; a larger, weaker
    # (0.5) blob is also above 0.15, so the largest contour misses the object at 0.15 (but all
    # contours find it, and so does any threshold above 0.5). Image b: the GT object is the
    # large blob; a faint (0.1) blob stays below 0.15.
    gt = {"a": _gt([[150, 150, 199, 199]]), "b": _gt([[0, 0, 120, 120]])}
    a = blob(150, 200, 150, 200) + 0.5 * blob(0, 121, 0, 121)
    b = blob(0, 121, 0, 121) + 0.1 * blob(150, 220, 150, 220)
    maps, ids = np.stack([a, b]), ["a", "b"]
    assert PROTOCOLS["cutmix2019"].fixed_threshold == 0.15
    paper = LocalizationEvaluator(gt, named_protocol("cutmix2019", cam_curve_interval=0.01))
    paper.update(maps, ids, top1_correct=[True, True], top5_correct=[True, True])
    out = paper.compute()
    assert out["protocol"]["name"] == "cutmix2019" and out["loc"]["contour_mode"] == "single"
    assert out["loc"]["fixed_threshold"] == pytest.approx(0.15)
    assert out["loc"]["gt_known_loc@fixed"] == 50.0 and out["loc"]["top1_loc@fixed"] == 50.0
    assert out["loc"]["gt_known_loc@best"] == 100.0  # above 0.5 only the object is left
    fair = LocalizationEvaluator(
        gt, named_protocol("wsolevaluation", cam_curve_interval=0.01, multi_contour=True)
    )
    fair.update(maps, ids)
    out = fair.compute(fixed_threshold=0.15)
    assert out["protocol"]["name"] == "wsolevaluation" and "fixed_threshold" not in out["protocol"]
    assert out["loc"]["gt_known_loc@fixed"] == 100.0  # all contours: a's object box is found
    with pytest.raises(ValueError, match="unknown protocol"):
        named_protocol("cutmix2020")


def test_protocol_validation_messages_and_normalised_fields():
    p = Protocol(iou_thresholds=[30.0, 50, 70.0], eval_size=[224.0, 224])
    assert p.iou_thresholds == (30, 50, 70) and p.eval_size == (224, 224)
    assert all(type(d) is int for d in p.iou_thresholds + p.eval_size)
    with pytest.raises(ValueError, match=r"^iou_thresholds must include 50 \(MaxBoxAcc and"):
        Protocol(iou_thresholds=(30, 70))
    for bad in ((0, 50), (50, 101)):
        with pytest.raises(ValueError, match=r"^IoU thresholds are percentages in \(0, 100\]"):
            Protocol(iou_thresholds=bad)
    assert Protocol(iou_thresholds=(1, 50, 100)).iou_thresholds == (1, 50, 100)  # the edges
    with pytest.raises(ValueError, match="invalid_cams must be 'error' or 'zero', not 'skip'"):
        Protocol(invalid_cams="skip")


def test_protocol_record_says_every_choice():
    # what metrics.json records of the protocol: every choice, by name
    assert Protocol().to_dict() == {
        "cam_curve_interval": 0.001,
        "iou_thresholds": [30, 50, 70],
        "eval_size": [224, 224],
        "interpolation": "cubic",
        "normalize": True,
        "multi_contour": False,
        "invalid_cams": "error",
        "name": "wsolevaluation",
        "headline": "MaxBoxAccV2",  # what its comparisons report
        "precision": "float64",
        "loc_convention": "wsolevaluation",
        "resize": "cv2.resize cubic, float64",
        "iou_convention": "+1 pixel (inclusive x1, y1)",
        "binarisation": "uint8 map > int(t * max), cv2.THRESH_BINARY",
        "contours": "cv2.findContours RETR_TREE; box = boundingRect, x1/y1 capped at W-1/H-1",
    }
    record = Protocol(fixed_threshold=0.15, interpolation="linear").to_dict()
    assert record["fixed_threshold"] == 0.15 and record["resize"] == "cv2.resize linear, float64"


def test_evaluator_needs_something_to_evaluate_and_records_per_image_only_for_boxes():
    gt = {"a": _gt([[10, 10, 110, 110]])}
    with pytest.raises(ValueError, match="nothing to evaluate: enable boxes or masks"):
        LocalizationEvaluator(gt, boxes=False, masks=False)
    ev = LocalizationEvaluator(gt, per_image=True)
    assert ev.boxes is not None and ev.masks is None and ev.per_image is not None
    assert ev.protocol == Protocol()
    assert LocalizationEvaluator(gt, per_image=False).per_image is None
    ev = LocalizationEvaluator(gt, Protocol(cam_curve_interval=0.1), boxes=False, masks=True,
                               per_image=True)  # fmt: skip
    assert ev.boxes is None and ev.masks is not None and ev.per_image is None
    assert ev.per_image_rows({}) == []
    ev = LocalizationEvaluator(gt, Protocol(cam_curve_interval=0.1), engine="reference")
    assert ev.boxes.engine == "reference"


def test_ground_truth_carries_every_field_and_checks_boxes(tmp_path):
    from wsol.data.records import DatasetSplit, ImageRecord
    from wsol.metrics import ground_truth

    rec = ImageRecord(
        image_id="a.jpg", path=tmp_path / "a.jpg", label=3, size=(40, 30),
        boxes=((1.0, 2.0, 10.0, 20.0), (0.0, 0.0, 5.0, 5.0)),
        mask_paths=(tmp_path / "m.png",), ignore_path=tmp_path / "i.png",
    )  # fmt: skip
    g = ground_truth(DatasetSplit("X", "test", [rec]))["a.jpg"]
    assert g.boxes.tolist() == [[1, 2, 10, 20], [0, 0, 5, 5]] and g.boxes.dtype == np.float64
    assert (g.size, g.label) == ((40, 30), 3)
    assert g.mask_paths == (tmp_path / "m.png",) and g.ignore_path == tmp_path / "i.png"
    bad = ImageRecord(image_id="b.jpg", path=tmp_path / "b.jpg", label=0, size=(40, 30),
                      boxes=((10.0, 2.0, 1.0, 20.0),))  # fmt: skip
    with pytest.raises(ValueError, match="GT boxes of b.jpg"):
        ground_truth(DatasetSplit("X", "test", [bad]))
    empty = ImageRecord(image_id="c.jpg", path=tmp_path / "c.jpg", label=0, size=(4, 3))
    assert ground_truth(DatasetSplit("X", "test", [empty]))["c.jpg"].boxes.shape == (0, 4)


def test_per_image_rows_come_in_chunks_equal_to_all_at_once(tmp_path):
    from wsol.runtime import write_csv_rows

    rng = np.random.default_rng(5)
    gt = {f"i{k}": _gt([[10, 10, 100 + k, 120]]) for k in range(7)}
    ev = LocalizationEvaluator(gt, Protocol(cam_curve_interval=0.05), per_image=True)
    ids = list(gt)
    ev.update(rng.random((7, 14, 14)), ids, [True] * 7, [True] * 7, list(range(7)))
    result = ev.compute()
    whole = ev.per_image_rows(result)
    assert [r["image_id"] for r in whole] == ids
    for chunk in (1, 3, 7, 100):
        assert list(ev.per_image.iter_rows(result, chunk=chunk)) == whole
    assert write_csv_rows(tmp_path / "rows.csv", iter(whole)) == 7
    lines = (tmp_path / "rows.csv").read_text().splitlines()
    assert lines[0].startswith("image_id,iou,") and len(lines) == 8
    assert write_csv_rows(tmp_path / "none.csv", iter([])) == 0
    assert not (tmp_path / "none.csv").exists()


def test_batches_accumulate_and_an_iou_equal_to_the_level_counts():
    # evaluation.py: correct when IoU >= d / 100 (inclusive); counts add up over batches
    gt = {"a": _gt([[0, 0, 9, 9]], size=(224, 224)), "b": _gt([[0, 0, 9, 9]])}
    p = Protocol(cam_curve_interval=0.25)
    half = blob(0, 4, 0, 9)  # boundingRect + w, + h: the box 0..9 x 0..4, IoU exactly 0.5
    one = BoxAccumulator(gt, p)
    one.update(np.stack([half, half]), ["a", "b"], [True, False], [True, True])
    two = BoxAccumulator(gt, p)
    two.update(half[None], ["a"], [True], [True])
    two.update(half[None], ["b"], [False], [True])
    for acc in (one, two):
        out = acc.compute()
        assert out["box"]["single"]["50"]["max_box_acc"] == 100.0  # 0.5 >= 0.5
        assert out["box"]["single"]["70"]["max_box_acc"] == 0.0
        assert out["loc"]["top1_loc@best"] == 50.0 and out["loc"]["top5_loc@best"] == 100.0
        assert out["classification"] == {"top1_acc": 50.0, "top5_acc": 100.0}
    for mode in ("single", "multi"):
        assert (one.correct[mode] == two.correct[mode]).all()
        assert (one.correct_top1[mode] == two.correct_top1[mode]).all()
        assert (one.correct_top5[mode] == two.correct_top5[mode]).all()


def test_pxap_counts_images_and_refuses_sets_without_positives(tmp_path):
    # evaluation.py MaskEvaluator.compute: an error when there is no GT positive (its "no
    # positive prediction" error cannot happen with maps in [0, 1]: threshold 0 takes every pixel)
    empty = _save_mask(tmp_path / "empty.png", np.zeros((224, 224), np.uint8))
    one = np.zeros((224, 224), np.uint8)
    one[100, 100] = 255
    single = _save_mask(tmp_path / "one.png", one)
    p = Protocol(cam_curve_interval=0.1)
    acc = MaskAccumulator({"a": _gt([], mask_paths=(empty,)), "b": _gt([], mask_paths=(empty,))}, p)
    acc.update(np.random.default_rng(0).random((2, 224, 224)), ["a", "b"])
    assert acc.count == 2
    with pytest.raises(RuntimeError, match="no positive ground-truth pixel"):
        acc.compute()
    acc = MaskAccumulator({"a": _gt([], mask_paths=(single,))}, p)  # one positive pixel is enough
    scores = np.zeros((1, 224, 224))
    scores[0, 100, 100] = 1.0
    acc.update(scores, ["a"])
    out = acc.compute()
    assert out["PxAP"] == pytest.approx(100.0) and out["images"] == 1
    # a point per threshold with a positive prediction: here every threshold (all predict)
    assert len(out["pr_curve"]["threshold"]) == 11  # 10 thresholds + the [1, 2) bin
