"""Every number of clovaai/wsolevaluation's own evaluator on the cases in
tests/fixtures/wsolevaluation (made by scripts/make_reference_fixtures.py, which says how): the
reference's BoxEvaluator (both contour modes, IoU 30/50/70, threshold step 0.001), its
MaskEvaluator (PxAP and both score histograms) and the score maps its CAMComputer prepares
(bicubic resize, then normalize_scoremap). A change to any definition fails here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wsol.data import read_wsol_metadata
from wsol.localize import prepare_scoremaps
from wsol.metrics import (
    BoxAccumulator,
    LocalizationEvaluator,
    MaskAccumulator,
    Protocol,
    ground_truth,
)

FIXTURES = Path(__file__).parent / "fixtures" / "wsolevaluation"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
PROTOCOL = Protocol(cam_curve_interval=EXPECTED["interval"], iou_thresholds=(30, 50, 70))


@pytest.fixture(scope="module")
def cams() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "cams.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def box_gt():
    return ground_truth(read_wsol_metadata(FIXTURES / "boxes"))


def test_prepared_scoremaps_equal_the_references(cams):
    # inference.py: cv2.resize(cam, (224, 224), INTER_CUBIC), then normalize_scoremap
    # (min-max; a constant map becomes zeros)
    for image_id, want in EXPECTED["scoremaps"].items():
        (m,) = prepare_scoremaps([cams[image_id]], [image_id])
        u8 = (m * 255).astype(np.uint8)
        hist = np.bincount(u8.ravel(), minlength=256).tolist()
        assert hist == want["uint8_histogram"], image_id
        assert m.sum() == pytest.approx(want["sum"], rel=1e-12, abs=1e-12), image_id


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_box_metrics_equal_the_references(cams, box_gt, engine):
    ids = list(box_gt)
    evaluator = LocalizationEvaluator(box_gt, PROTOCOL, boxes=True, engine=engine)
    for start in range(0, len(ids), 5):  # batches of mixed raw sizes
        batch = ids[start : start + 5]
        evaluator.update([cams[i] for i in batch], batch)
    result = evaluator.compute()
    thresholds = np.arange(0, 1, EXPECTED["interval"])
    for mode in ("single", "multi"):
        want = EXPECTED["box"][mode]
        assert evaluator.boxes.count == want["images"] == len(ids)
        for i, d in enumerate(EXPECTED["iou_thresholds"]):
            counts = evaluator.boxes.correct[mode][i]
            assert counts.tolist() == want["num_correct"][str(d)], (mode, d)
            curve = np.asarray(want["num_correct"][str(d)], float) * 100.0 / want["images"]
            assert result["curves"][mode][str(d)] == curve.tolist(), (mode, d)
            got = result["box"][mode][str(d)]
            assert got["max_box_acc"] == want["max_box_acc"][str(d)], (mode, d)
            assert got["best_threshold"] == want["best_threshold"][str(d)], (mode, d)
            assert got["best_threshold"] == float(thresholds[int(np.argmax(counts))])
    assert result["MaxBoxAcc"] == EXPECTED["box"]["single"]["max_box_acc"]["50"]
    assert result["MaxBoxAccV2"] == pytest.approx(EXPECTED["MaxBoxAccV2"], abs=1e-12)


def test_each_images_curve_equals_the_references(cams, box_gt):
    want = EXPECTED["box"]["single"]["correct_thresholds_per_image"]
    for image_id, expected in want.items():
        acc = BoxAccumulator({image_id: box_gt[image_id]}, PROTOCOL)
        acc.update(prepare_scoremaps([cams[image_id]], [image_id]), [image_id])
        i50 = PROTOCOL.iou_thresholds.index(50)
        assert int(acc.correct["single"][i50].sum()) == expected, image_id


def test_pxap_and_its_histograms_equal_the_references(cams):
    split = read_wsol_metadata(FIXTURES / "masks", mask_root=FIXTURES / "mask_files")
    gt = ground_truth(split)
    acc = MaskAccumulator(gt, PROTOCOL)
    ids = [r.image_id for r in split.records]
    acc.update(prepare_scoremaps([cams[i] for i in ids], ids), ids)
    want = EXPECTED["mask"]
    assert acc.fg_hist.tolist() == want["gt_true_score_hist"]
    assert acc.bg_hist.tolist() == want["gt_false_score_hist"]
    assert acc.compute()["PxAP"] == pytest.approx(want["PxAP"], abs=1e-9)


def test_the_cli_path_gives_the_references_numbers(cams, tmp_path):
    from wsol.evaluate import evaluate_cams

    folder = tmp_path / "cams"
    for image_id, cam in cams.items():
        path = folder / f"{image_id}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, cam)
    boxes = evaluate_cams(folder, FIXTURES / "boxes", protocol=PROTOCOL, progress=False)
    assert boxes["MaxBoxAccV2"] == pytest.approx(EXPECTED["MaxBoxAccV2"], abs=1e-12)
    assert boxes["MaxBoxAcc"] == EXPECTED["box"]["single"]["max_box_acc"]["50"]
    masks = evaluate_cams(
        folder, FIXTURES / "masks", FIXTURES / "mask_files", protocol=PROTOCOL, progress=False
    )
    assert masks["PxAP"] == pytest.approx(EXPECTED["mask"]["PxAP"], abs=1e-9)


def test_per_image_rows_add_up_to_the_references_metrics(cams, box_gt):
    from wsol.localize import resize_boxes, threshold_ious_reference

    ids = list(box_gt)
    ev = LocalizationEvaluator(box_gt, PROTOCOL, per_image=True)
    top1 = [k % 2 == 0 for k in range(len(ids))]
    top5 = [k % 3 != 0 for k in range(len(ids))]
    ev.update([cams[i] for i in ids], ids, top1, top5, predictions=list(range(len(ids))))
    result = ev.compute(fixed_threshold=0.3)
    rows = ev.per_image_rows(result)
    assert [r["image_id"] for r in rows] == ids
    n = len(ids)
    # each column adds up to its metric (as the reference counts them)
    assert sum(r["MaxBoxAcc_correct"] for r in rows) * 100.0 / n == pytest.approx(
        EXPECTED["box"]["single"]["max_box_acc"]["50"]
    )
    assert np.mean([r["MaxBoxAccV2_score"] for r in rows]) == pytest.approx(EXPECTED["MaxBoxAccV2"])
    loc = result["loc"]
    assert sum(r["gt_known_correct"] for r in rows) * 100.0 / n == pytest.approx(
        loc["gt_known_loc@best"]
    )
    both = sum(r["gt_known_correct"] and r["top1_correct"] for r in rows) * 100.0 / n
    assert both == pytest.approx(loc["top1_loc@best"])
    grid = PROTOCOL.thresholds
    best, fixed = (
        int(np.argmin(np.abs(grid - loc["best_threshold"]))),
        int(np.argmin(np.abs(grid - 0.3))),
    )
    for k, (row, image_id) in enumerate(zip(rows, ids)):
        (prepared,) = prepare_scoremaps([cams[image_id]], [image_id])
        g = box_gt[image_id]
        curve = threshold_ious_reference(prepared, resize_boxes(g.boxes, g.size), grid, False)
        assert row["iou"] == pytest.approx(curve[best], abs=1e-6)
        assert row["iou_fixed"] == pytest.approx(curve[fixed], abs=1e-6)
        assert row["gt_known_correct"] == int(curve[best] >= 0.5)
        assert row["threshold"] == loc["best_threshold"]
        assert (row["top1_correct"], row["top5_correct"]) == (int(top1[k]), int(top5[k]))
        assert row["prediction"] == k
    no_fixed = ev.per_image_rows(ev.compute())
    assert "iou_fixed" not in no_fixed[0]


def test_pxap_curve_points_are_the_pixel_precision_and_recall():
    from wsol.metrics import gt_mask

    split = read_wsol_metadata(FIXTURES / "masks", mask_root=FIXTURES / "mask_files")
    gt = ground_truth(split)
    ids = [r.image_id for r in split.records]
    with np.load(FIXTURES / "cams.npz") as data:
        maps = prepare_scoremaps([data[i] for i in ids], ids)
    acc = MaskAccumulator(gt, PROTOCOL)
    acc.update(maps, ids)
    curve = acc.compute()["pr_curve"]
    masks = [gt_mask(gt[i].mask_paths, gt[i].ignore_path) for i in ids]
    fg = np.concatenate([m[mask == 1] for m, mask in zip(maps, masks)])
    bg = np.concatenate([m[mask == 0] for m, mask in zip(maps, masks)])
    assert len(curve["threshold"]) == len(curve["precision"]) == len(curve["recall"]) > 100
    assert curve["threshold"] == sorted(curve["threshold"], reverse=True)
    for t, precision, recall in zip(curve["threshold"], curve["precision"], curve["recall"]):
        tp, fp = np.sum(fg >= t), np.sum(bg >= t)
        assert tp + fp > 0  # points without a prediction are left out
        assert precision == pytest.approx(tp / (tp + fp)) and recall == pytest.approx(tp / len(fg))
    assert curve["recall"][-1] == 1.0 and curve["threshold"][-1] == 0.0
