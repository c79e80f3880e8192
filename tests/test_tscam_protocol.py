"""`--protocol tscam_cub` / `tscam_ilsvrc`: TS-CAM's own evaluation, pinned against its code.

tests/fixtures/tscam_eval.npz holds the answers of vasgaowei/TS-CAM's ``evaluate_cls_loc``
(lib/cams_deit.py) and test loader (lib/datasets/imagenet.py) on shared CAMs, logits and boxes;
scripts/make_tscam_eval_fixtures.py made them from the official code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wsol.localize import prepare_scoremaps, to_uint8, tscam_box, tscam_gt_boxes, tscam_iou
from wsol.metrics import PROTOCOLS, GroundTruth, LocalizationEvaluator, Protocol, named_protocol

FIXTURE = Path(__file__).parent / "fixtures" / "tscam_eval.npz"


@pytest.fixture(scope="module")
def case():
    d = dict(np.load(FIXTURE))
    starts = np.concatenate([[0], np.cumsum(d["box_counts"])])
    d["box_list"] = [d["boxes"][a:b] for a, b in zip(starts[:-1], starts[1:])]
    return d


def _gt(case) -> dict:
    return {
        f"im{i}": GroundTruth(boxes, tuple(int(v) for v in case["sizes"][i]), int(case["labels"][i]))
        for i, boxes in enumerate(case["box_list"])
    }


def _gt_class_cams(case) -> np.ndarray:
    return case["cams"][np.arange(len(case["labels"])), case["labels"]]


def test_gt_boxes_are_the_official_loaders(case):
    # lib/datasets/imagenet.py __getitem__: x / W * 224, clipped to [0, 223], then int
    for i, boxes in enumerate(case["box_list"]):
        want = np.array(case["gt_strings"][i].split(" "), dtype=np.int64).reshape(-1, 4)
        got = tscam_gt_boxes(boxes, tuple(case["sizes"][i]), (224, 224))
        np.testing.assert_array_equal(got, want, err_msg=f"image {i}")
    # a box reaching the image's right and bottom edges ends at 223, not 224
    assert tscam_gt_boxes(np.array([[0.0, 0.0, 500.0, 375.0]]), (500, 375)).tolist() == [
        [0, 0, 223, 223]
    ]


@pytest.mark.parametrize("threshold", [0.1, 0.12])
def test_boxes_and_ious_are_the_officials(case, threshold):
    # lib/cams_deit.py: resize_cam (cv2 linear in float32, then min-max) and get_bboxes
    key = f"{threshold:g}"
    cams = _gt_class_cams(case)
    ids = [f"im{i}" for i in range(len(cams))]
    maps = prepare_scoremaps(cams, ids, (224, 224), True, "linear", "error", np.float32)
    gts = _gt(case)
    for i, (m, image_id) in enumerate(zip(to_uint8(maps), ids)):
        box = tscam_box(m, threshold)
        np.testing.assert_array_equal(box, case[f"box_{key}"][i], err_msg=f"image {i}")
        g = tscam_gt_boxes(gts[image_id].boxes, gts[image_id].size)
        assert tscam_iou(box, g) == pytest.approx(case[f"iou_{key}"][i], abs=1e-12), i


@pytest.mark.parametrize("name", ["tscam_cub", "tscam_ilsvrc"])
def test_the_protocols_loc_metrics_are_the_officials(case, name):
    # evaluate_cls_loc: GT-known at IoU >= 0.5, top-1 and top-5 loc at IoU > 0.5 (cls_loc_err)
    protocol = named_protocol(name, cam_curve_interval=0.05)
    key = f"{protocol.fixed_threshold:g}"
    logits, labels = case["logits"], case["labels"]
    top5 = np.argsort(-logits, axis=1)[:, :5]
    top1_ok = top5[:, 0] == labels
    top5_ok = (top5 == labels[:, None]).any(axis=1)
    ids = [f"im{i}" for i in range(len(labels))]
    evaluator = LocalizationEvaluator(_gt(case), protocol, per_image=True)
    for part in (slice(0, 20), slice(20, None)):  # batches, as an evaluation feeds it
        evaluator.update(_gt_class_cams(case)[part], ids[part], top1_ok[part], top5_ok[part])
    result = evaluator.compute()
    loc = result["loc"]
    assert loc["fixed_threshold"] == protocol.fixed_threshold
    assert loc["top1_loc@fixed"] == pytest.approx(case[f"loc_top1_{key}"].mean() * 100)
    assert loc["top5_loc@fixed"] == pytest.approx(case[f"loc_top5_{key}"].mean() * 100)
    assert loc["gt_known_loc@fixed"] == pytest.approx(case[f"gt_known_{key}"].mean() * 100)
    rows = evaluator.per_image_rows(result)
    np.testing.assert_allclose([r["iou_fixed"] for r in rows], case[f"iou_{key}"], atol=1e-12)
    assert [r["top1_loc_fixed_correct"] for r in rows] == case[f"loc_top1_{key}"].tolist()
    assert result["protocol"]["precision"] == "float32"
    assert "TS-CAM" in result["protocol"]["loc_fixed"]


def test_tscam_boxes_and_ious_at_their_edges():
    # lib/cams_deit.py get_bboxes and cal_iou: the box's far edge is x + w, y + h (uncapped),
    # +1 pixel areas, and [0, 0, 1, 1] when no pixel is above the threshold
    gt = {"a": GroundTruth(np.array([[0.0, 0.0, 224.0, 224.0]]), (224, 224), 0)}
    cam = np.zeros((224, 224), np.float32)
    cam[:112, :] = 1.0
    box = tscam_box(to_uint8(cam), 0.1)
    assert box.tolist() == [0, 0, 224, 112]  # x + w, y + h: not capped at 223
    # +1 areas: box 225 x 113, GT 0..223 (224 x 224), intersection 224 x 113
    assert tscam_iou(box, tscam_gt_boxes(gt["a"].boxes, (224, 224))) == pytest.approx(
        224 * 113 / (225 * 113 + 224 * 224 - 224 * 113)
    )
    # an exact half: GT 0..223 x 0..223 (224 x 224 pixels), box 0..223 x 0..111 (224 x 112)
    assert tscam_iou(np.array([0, 0, 223, 111]), np.array([[0, 0, 223, 223]])) == 0.5
    evaluator = LocalizationEvaluator(gt, named_protocol("tscam_cub", cam_curve_interval=0.05))
    evaluator.boxes.fixed_correct[:] = 0
    ious = evaluator.boxes._tscam_update(
        np.zeros((1, 224, 224), np.uint8), ["a"], np.array([True]), np.array([True])
    )
    assert ious.tolist() == [pytest.approx(4 / (224 * 224))]  # no pixel: the box [0, 0, 1, 1]


def test_an_iou_of_exactly_one_half_is_gt_known_but_not_top1_loc(monkeypatch):
    # cams_deit.py: `if iou >= 0.5` for GT-known, `max_iou > iou_th` in cls_loc_err for top-1
    # (and top-5) loc
    from wsol import metrics

    gt = {"a": GroundTruth(np.array([[0.0, 0.0, 224.0, 224.0]]), (224, 224), 0)}
    monkeypatch.setattr(metrics, "tscam_iou", lambda box, gts: 0.5)
    evaluator = LocalizationEvaluator(gt, named_protocol("tscam_cub", cam_curve_interval=0.05))
    evaluator.update(np.ones((1, 7, 7), np.float32), ["a"], [True], [True])
    loc = evaluator.compute()["loc"]
    assert loc["gt_known_loc@fixed"] == 100.0
    assert loc["top1_loc@fixed"] == 0.0 and loc["top5_loc@fixed"] == 0.0


def test_the_presets_and_their_refusals():
    # thresholds: TS-CAM's configs/CUB/*.yaml CAM_THR 0.1, configs/ILSVRC/*.yaml 0.12
    assert PROTOCOLS["tscam_cub"].fixed_threshold == 0.1
    assert PROTOCOLS["tscam_ilsvrc"].fixed_threshold == 0.12
    for name in ("tscam_cub", "tscam_ilsvrc"):
        p = PROTOCOLS[name]
        assert (p.interpolation, p.precision, p.loc_convention) == ("linear", "float32", "tscam")
        assert p.headline == "top1_loc@fixed" and not p.multi_contour
    with pytest.raises(ValueError, match="fixed threshold"):
        Protocol(loc_convention="tscam")
    with pytest.raises(ValueError, match="loc_convention"):
        Protocol(loc_convention="other", fixed_threshold=0.1)
    with pytest.raises(ValueError, match="precision"):
        Protocol(precision="float16")
    gt = {"a": GroundTruth(np.array([[0.0, 0.0, 10.0, 10.0]]), (20, 20), 0)}
    evaluator = LocalizationEvaluator(gt, named_protocol("tscam_cub", cam_curve_interval=0.05))
    evaluator.update(np.ones((1, 4, 4), np.float32), ["a"], [True], [True])
    with pytest.raises(ValueError, match="its own threshold 0.1"):
        evaluator.compute(0.3)


def test_evaluate_and_compare_with_the_tscam_protocol(tmp_path, capsys):
    # end to end on a tiny run: its own folder, the TS-CAM rule in per_image.csv, the
    # protocol's headline in compare, and the same folder name as the preset's
    from wsol.cli import main
    from wsol.config import load_config
    from wsol.data import SynthSpec, make_synthetic
    from wsol.evaluate import eval_folder_name
    from wsol.train import train

    data = tmp_path / "data"
    make_synthetic(data, SynthSpec(classes=3, train=24, test=9, size=32, seed=4), progress=False)
    runs = []
    for method in ("base", "cutmix"):
        overrides = [f"data.root={data}", "data.val_per_class=2", "data.resize_size=36",
                     "data.crop_size=32", "data.workers=0", "model.name=smallcnn",
                     "model.pretrained=null", "batch_size=16", "epochs=1", "amp=none",
                     "device=cpu", "cam_curve_interval=0.05", f"method.method={method}"]  # fmt: skip
        run = tmp_path / method
        train(load_config(None, overrides), run, progress=False)
        assert main(["evaluate", str(run), "--protocol", "tscam_cub", "--quiet",
                     "--workers", "0"]) == 0  # fmt: skip
        runs.append(run)
    folder = runs[0] / "eval_test_tscam_cub"
    assert eval_folder_name(protocol=PROTOCOLS["tscam_cub"]) == "eval_test_tscam_cub"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["protocol"]["name"] == "tscam_cub"
    assert metrics["protocol"]["interpolation"] == "linear"
    assert metrics["loc"]["fixed_threshold"] == 0.1
    import pandas as pd

    rows = pd.read_csv(folder / "per_image.csv")
    want = ((rows["iou_fixed"] > 0.5) & (rows["top1_correct"] == 1)).astype(int)
    assert (rows["top1_loc_fixed_correct"] == want).all()
    assert rows["top1_loc_fixed_correct"].mean() * 100 == pytest.approx(
        metrics["loc"]["top1_loc@fixed"]
    )
    boxes = pd.read_csv(folder / "boxes.csv")
    assert set(boxes[boxes["which"] == "chosen"]["score_threshold"]) == {0.1}
    assert main(["evaluate", str(runs[0]), "--protocol", "tscam_cub", "--threshold", "0.2",
                 "--quiet"]) == 2  # fmt: skip
    assert "fixes the threshold" in capsys.readouterr().err
    out = tmp_path / "compare"
    evals = [str(r / "eval_test_tscam_cub") for r in runs]
    assert main(["compare", *evals, "--out", str(out), "--bootstrap", "20"]) == 0
    diffs = pd.read_csv(out / "differences.csv")
    headline = diffs[diffs["headline"].astype(str).str.lower() == "true"]
    assert set(headline["metric"]) == {"top1_loc@fixed"}
    assert set(diffs["protocol"]) == {"tscam_cub"}
