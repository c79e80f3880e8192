"""`--protocol sat_cub` / `sat_ilsvrc`: SAT's own evaluation, pinned against its code.

tests/fixtures/sat_eval.npz holds what wpy1999/SAT's ``val_loc_one_epoch`` (evaluator.py and
evaluator_ImageNet.py) and its test loaders' ``load_test_bbox`` (DataLoader/CUB_200_2011.py,
DataLoader/ILSVRC.py) computed on shared maps, logits and boxes: each image's GT in the crop,
its box and best IoU at each threshold, and each 0 / 100 it added to its meters;
scripts/make_sat_eval_fixtures.py made them from the official code.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from wsol.localize import box_to_image, crop_gt_boxes, sat_box, sat_gt_boxes, sat_iou
from wsol.metrics import (
    PROTOCOLS,
    GroundTruth,
    LocalizationEvaluator,
    Protocol,
    fit_center_crop,
    named_protocol,
)

FIXTURE = Path(__file__).parent / "fixtures" / "sat_eval.npz"
THRESHOLDS = (0.3, 0.35, 0.4, 0.45)
DATASETS = ("cub", "ilsvrc")


@pytest.fixture(scope="module")
def fixture():
    return dict(np.load(FIXTURE))


def _case(fixture, dataset: str) -> dict:
    d = {k.removeprefix(f"{dataset}_"): v for k, v in fixture.items() if k.startswith(dataset)}
    starts = np.concatenate([[0], np.cumsum(d["box_counts"])])
    d["box_list"] = [d["boxes"][a:b] for a, b in zip(starts[:-1], starts[1:])]
    starts = np.concatenate([[0], np.cumsum(d["gt_counts"])])
    d["gt_list"] = [d["gt_boxes"][a:b] for a, b in zip(starts[:-1], starts[1:])]
    d["ids"] = [f"im{i}" for i in range(len(d["labels"]))]
    d["gt"] = {
        f"im{i}": GroundTruth(boxes, tuple(int(v) for v in d["sizes"][i]), int(d["labels"][i]))
        for i, boxes in enumerate(d["box_list"])
    }
    return d


class _TenCropModel(torch.nn.Module):
    """Returns the fixture's logits of each crop: crop k of image i is filled with 10 i + k."""

    def __init__(self, ten):
        super().__init__()
        self.ten = torch.from_numpy(ten)

    def forward(self, x):
        code = x[:, 0, 0, 0].long()
        return self.ten[code // 10, code % 10]


def _classes(case, dataset: str):
    """(top-1 correct, top-5 correct) as SAT ranks the classes: the mean softmax of the ten
    crops for CUB (evaluator.py's --tencrop default), the centre crop's logits for ImageNet."""
    from wsol.evaluate import ten_crop_scores

    labels = torch.from_numpy(case["labels"])
    if dataset == "cub":
        n = len(labels)
        crops = torch.zeros(10, n, 3, 2, 2)
        crops[:, :, :, 0, 0] = (torch.arange(n)[None, :] * 10 + torch.arange(10)[:, None])[
            ..., None
        ]
        scores = ten_crop_scores(_TenCropModel(case["ten"]), crops)
    else:
        scores = torch.from_numpy(case["logits"])
    top5 = scores.topk(5, dim=1).indices
    return (top5[:, 0] == labels).numpy(), (top5 == labels[:, None]).any(dim=1).numpy()


@pytest.mark.parametrize("dataset", DATASETS)
def test_gt_boxes_are_the_official_loaders(fixture, dataset):
    # load_test_bbox: x / W * 256 - 16, raised to 0 / lowered to 223, truncated; boxes inside
    # the border the crop cuts off come out crossed (x1 < x0) there and here
    case = _case(fixture, dataset)
    for i, boxes in enumerate(case["box_list"]):
        got = sat_gt_boxes(boxes, tuple(case["sizes"][i]), (256, 224))
        np.testing.assert_array_equal(got, case["gt_list"][i], err_msg=f"image {i}")
    assert (case["gt_boxes"][:, 2] < case["gt_boxes"][:, 0]).any()  # the case has crossed ones


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_boxes_and_ious_are_the_officials(fixture, dataset, threshold):
    # utils/func.py normalize_map (min-max + 1e-5 at 14 x 14, cv2 linear to 224) and
    # evaluator.py's box (map > thr, largest skimage component, regionprops bbox) and IoU
    case = _case(fixture, dataset)
    protocol = PROTOCOLS[f"sat_{dataset}"]
    maps = protocol.scoremaps(case["maps"], case["ids"])
    assert maps.dtype == np.float32 and maps.shape[1:] == (224, 224)
    key = f"{threshold:g}"
    for i, scoremap in enumerate(maps):
        box = sat_box(scoremap, threshold)
        np.testing.assert_array_equal(box, case[f"box_{key}"][i], err_msg=f"image {i}")
        # CUB's GT reaches the IoU as the DataLoader's int64 tensor, so SAT's IoU there is a
        # float32 tensor; ImageNet's as parsed floats. An IoU at 224 x 224 is a ratio of whole
        # numbers below 2 * 225 ** 2, at least 1e-5 from any level it does not equal, so the
        # float32 rounding (below 1e-7) decides nothing
        tolerance = 1e-7 if dataset == "cub" else 1e-12
        iou = sat_iou(box, case["gt_list"][i])
        assert iou == pytest.approx(case[f"iou_{key}"][i], abs=tolerance), i


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_the_protocols_loc_metrics_are_the_officials(fixture, dataset, threshold):
    # val_loc_one_epoch's meters: gt_loc, loc_top1 and loc_top5 all at IoU >= 0.5, each image's
    # classes from ten crops (CUB) or the centre crop (ImageNet)
    case = _case(fixture, dataset)
    top1_ok, top5_ok = _classes(case, dataset)
    np.testing.assert_array_equal(top1_ok, case["cls_top1"] == 1)
    np.testing.assert_array_equal(top5_ok, case["cls_top5"] == 1)
    protocol = named_protocol(f"sat_{dataset}", fixed_threshold=threshold, cam_curve_interval=0.05)
    evaluator = LocalizationEvaluator(case["gt"], protocol, per_image=True)
    ids = case["ids"]
    for part in (slice(0, 20), slice(20, None)):  # batches, as an evaluation feeds it
        evaluator.update(case["maps"][part], ids[part], top1_ok[part], top5_ok[part])
    result = evaluator.compute()
    loc, key = result["loc"], f"{threshold:g}"
    assert loc["fixed_threshold"] == threshold
    assert loc["gt_known_loc@fixed"] == pytest.approx(case[f"gt_known_{key}"].mean() * 100)
    assert loc["top1_loc@fixed"] == pytest.approx(case[f"loc_top1_{key}"].mean() * 100)
    assert loc["top5_loc@fixed"] == pytest.approx(case[f"loc_top5_{key}"].mean() * 100)
    rows = evaluator.per_image_rows(result)
    np.testing.assert_allclose([r["iou_fixed"] for r in rows], case[f"iou_{key}"], atol=1e-7)
    assert [r["top1_loc_fixed_correct"] for r in rows] == case[f"loc_top1_{key}"].tolist()
    assert "SAT" in result["protocol"]["loc_fixed"] and result["protocol"]["center_crop"] == [
        256,
        224,
    ]


def test_the_presets_are_the_evaluators_defaults():
    # evaluator.py: --threshold [0.4], --tencrop True; evaluator_ImageNet.py: [0.3], False;
    # both: --resize_size 256, --crop_size 224
    cub, ilsvrc = PROTOCOLS["sat_cub"], PROTOCOLS["sat_ilsvrc"]
    assert (cub.fixed_threshold, cub.ten_crop) == (0.4, True)
    assert (ilsvrc.fixed_threshold, ilsvrc.ten_crop) == (0.3, False)
    for p in (cub, ilsvrc):
        assert p.center_crop == (256, 224) and p.eval_size == (224, 224)
        assert (p.map_convention, p.loc_convention) == ("sat", "sat")
        assert (p.interpolation, p.precision, p.multi_contour) == ("linear", "float32", False)
        assert p.headline == "top1_loc@fixed"


def test_sat_box_at_its_edges():
    # evaluator.py: `map_i > threshold` (strict; the float32 map against the threshold as
    # float32, numpy's rule for a Python float); no pixel above: [0, 0, crop, crop];
    # count_max sorts the components stably by size, so on a tie the first in row-major order
    m = np.zeros((8, 10), np.float32)
    m[1:3, 6:9] = np.float32(0.4)  # exactly the threshold: not above it
    assert sat_box(m, 0.4).tolist() == [0, 0, 10, 8]
    m[5:7, 1:3] = 0.9  # 2 x 2, found: far edges one past the last pixel
    assert sat_box(m, 0.4).tolist() == [1, 5, 3, 7]
    m[1:3, 6:8] = 0.9  # another 2 x 2, earlier in row-major order: it wins the tie
    assert sat_box(m, 0.4).tolist() == [6, 1, 8, 3]
    m[7, 3] = 0.9  # joins the lower blob diagonally (8-connected): 5 pixels, now the largest
    assert sat_box(m, 0.4).tolist() == [1, 5, 4, 8]
    assert sat_box(np.zeros((4, 4), np.float32), 0.0).tolist() == [0, 0, 4, 4]  # 0 > 0: none


def test_sat_iou_and_the_crossed_gt():
    # utils/accuracy.py IoU: +1 pixel areas, intersections raised to 0, the first best kept
    assert sat_iou([0, 0, 9, 9], [[0, 0, 9, 4]]) == 0.5
    assert sat_iou([0, 0, 9, 9], [[20, 20, 30, 30], [0, 0, 9, 9]]) == 1.0
    crossed = sat_gt_boxes(np.array([[0.0, 10.0, 10.0, 200.0]]), (500, 300), (256, 224))
    assert crossed.tolist() == [[0, 0, -10, 154]]  # 10 / 500 * 256 - 16 = -10.88 -> -10
    assert sat_iou([0, 0, 223, 223], crossed) == 0.0
    assert sat_iou([0, 0, 1, 1], [[0, 0, -3, 0]]) == 0.0  # union 4 + (-2) - 0 = 2: IoU 0
    assert sat_iou([0, 0, 0, 0], [[0, 0, -2, 0]]) == 0.0  # union 1 - 1 = 0: SAT divides by 0
    # the sweep leaves the crossed box out; with no box left, one past the crop: a miss
    assert crop_gt_boxes(np.array([[0.0, 10.0, 10.0, 200.0]]), (500, 300), (256, 224)).tolist() == [
        [224, 224, 224, 224]
    ]


def test_the_maps_normalisation_is_normalize_maps():
    # utils/func.py normalize_map: (map - min) / (max - min + 1e-5), in the map's float32, so
    # the top pixel stays just below 1 and a constant map is all 0
    from wsol.localize import sat_normalize

    m = np.array([[2.0, 3.0], [4.0, 2.5]], np.float32)
    f = np.float32
    want = np.array([[0, 1], [2, 0.5]], np.float32) / (f(2.0) + f(1e-5))
    got = sat_normalize(m)
    assert got.dtype == np.float32 and got.tolist() == want.tolist() and got.max() < 1
    assert sat_normalize(np.full((2, 2), 7.0, np.float32)).tolist() == [[0, 0], [0, 0]]


def test_the_sweep_keeps_every_box_inside_the_crop():
    # crop_gt_boxes drops only crossed boxes (x1 < x0 or y1 < y0): a box one pixel wide or
    # high at the crop's edge stays, and so does one whose x1 is below its y0
    crop = (256, 224)
    thin = crop_gt_boxes(np.array([[0.0, 50.0, 16.5, 100.0]]), (256, 256), crop)
    assert thin.tolist() == [[0, 34, 0, 84]]  # x: 0 - 16 -> 0, 16.5 - 16 -> 0
    flat = crop_gt_boxes(np.array([[50.0, 0.0, 100.0, 16.5]]), (256, 256), crop)
    assert flat.tolist() == [[34, 0, 84, 0]]
    tall = crop_gt_boxes(np.array([[10.0, 150.0, 40.0, 200.0]]), (256, 256), crop)
    assert tall.tolist() == [[0, 134, 24, 184]]


def test_an_iou_of_exactly_one_half_is_top1_loc_under_sat(monkeypatch):
    # evaluator.py: `cls_loc = 100 if prec1 and max_iou >= 0.5` (TS-CAM's rule is `> 0.5`)
    from wsol import metrics

    gt = {"a": GroundTruth(np.array([[0.0, 0.0, 256.0, 256.0]]), (256, 256), 0)}
    monkeypatch.setattr(metrics, "sat_iou", lambda box, gts: 0.5)
    evaluator = LocalizationEvaluator(gt, named_protocol("sat_cub", cam_curve_interval=0.05))
    evaluator.update(np.ones((1, 7, 7), np.float32), ["a"], [True], [True])
    loc = evaluator.compute()["loc"]
    assert loc["gt_known_loc@fixed"] == loc["top1_loc@fixed"] == loc["top5_loc@fixed"] == 100.0


def test_the_sweep_scores_the_crop():
    # MaxBoxAcc under a centre crop: GT in the crop's pixels; a box wholly cut off is a miss
    p = named_protocol("sat_cub", cam_curve_interval=0.05)
    gt = {
        "in": GroundTruth(np.array([[64.0, 64.0, 192.0, 192.0]]), (256, 256), 0),
        "out": GroundTruth(np.array([[0.0, 0.0, 10.0, 10.0]]), (256, 256), 0),
    }
    cam = np.zeros((224, 224), np.float32)
    cam[48:177, 48:177] = 1.0  # the first box in the crop: 64 - 16 .. 192 - 16 (inclusive)
    evaluator = LocalizationEvaluator(gt, p)
    evaluator.update(np.stack([cam, cam]), ["in", "out"])
    assert evaluator.compute()["MaxBoxAcc"] == 50.0


def test_refusals_and_the_run_fit():
    with pytest.raises(ValueError, match="resize - crop must be even"):
        Protocol(center_crop=(255, 224), eval_size=(224, 224))
    with pytest.raises(ValueError, match=r"eval_size must be \(224, 224\)"):
        Protocol(center_crop=(256, 224), eval_size=(200, 200))
    with pytest.raises(ValueError, match="1 <= crop <= resize"):
        Protocol(center_crop=(200, 224), eval_size=(224, 224))
    with pytest.raises(ValueError, match="needs center_crop"):
        Protocol(ten_crop=True)
    with pytest.raises(ValueError, match="needs normalize"):
        dataclasses.replace(PROTOCOLS["sat_cub"], normalize=False)
    with pytest.raises(ValueError, match="map_convention"):
        Protocol(map_convention="other")
    with pytest.raises(ValueError, match="sat loc convention scores at a fixed threshold"):
        Protocol(loc_convention="sat")
    gt = {"a": GroundTruth(np.array([[0.0, 0.0, 10.0, 10.0]]), (20, 20), 0)}
    with pytest.raises(ValueError, match="scores boxes, not masks"):
        LocalizationEvaluator(gt, PROTOCOLS["sat_cub"], masks=True)
    evaluator = LocalizationEvaluator(gt, named_protocol("sat_cub", cam_curve_interval=0.05))
    evaluator.update(np.ones((1, 4, 4), np.float32), ["a"], [True], [True])
    with pytest.raises(ValueError, match="its own threshold 0.4"):
        evaluator.compute(0.3)
    fitted = fit_center_crop(PROTOCOLS["sat_cub"], 72, 64)
    assert (fitted.center_crop, fitted.eval_size, fitted.ten_crop) == ((72, 64), (64, 64), True)
    assert fit_center_crop(PROTOCOLS["sat_cub"], 256, 224) is PROTOCOLS["sat_cub"]
    assert fit_center_crop(PROTOCOLS["wsolevaluation"], 72, 64) is PROTOCOLS["wsolevaluation"]
    # records of protocols without the new fields stay as they were (folder names, keys)
    assert "center_crop" not in Protocol().to_dict() and "ten_crop" not in Protocol().to_dict()


def test_boxes_go_back_through_the_crop():
    # crop pixel x is column x + 16 of the 256-wide resized image, which maps to the original
    assert box_to_image((0, 0, 223, 223), (224, 224), (512, 512), (256, 224)) == (32, 32, 479, 479)
    assert box_to_image((0, 0, 223, 223), (224, 224), (512, 512)) == (0, 0, 511, 511)


def test_the_crops_are_sats_loaders():
    # DataLoader/CUB_200_2011.py: transforms.Resize((R, R)), CenterCrop(C) / TenCrop(C) on the
    # PIL image, then ToTensor and Normalize per crop; ours normalise first, crop the batch
    from PIL import Image
    from torchvision import transforms

    from wsol.data.dataset import IMAGENET_MEAN, IMAGENET_STD, center_and_ten_crops, eval_transform

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (57, 83, 3), dtype=np.uint8))
    norm = transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    centre = transforms.Compose([transforms.Resize((72, 72)), transforms.CenterCrop(64),
                                 transforms.ToTensor(), norm])  # fmt: skip
    ten = transforms.Compose([
        transforms.Resize((72, 72)),
        transforms.TenCrop(64),
        transforms.Lambda(lambda crops: torch.stack([norm(transforms.ToTensor()(c)) for c in crops])),
    ])  # fmt: skip
    torch.testing.assert_close(eval_transform(64, 72)(image), centre(image), rtol=0, atol=0)
    whole = eval_transform(64, 72, crop=False)(image)
    assert whole.shape == (3, 72, 72)
    middle, crops = center_and_ten_crops(whole[None], 64)
    torch.testing.assert_close(middle[0], centre(image), rtol=0, atol=0)
    torch.testing.assert_close(crops[:, 0], ten(image), rtol=0, atol=0)


def test_evaluate_a_run_with_the_sat_protocol(tmp_path, capsys):
    # end to end on a tiny run: the crop fitted to the run, ten-crop classes, SAT's rule in
    # per_image.csv, the threshold in boxes.csv, boxes inside the image
    import pandas as pd

    from wsol.cli import main
    from wsol.config import load_config
    from wsol.data import SynthSpec, make_synthetic
    from wsol.train import train

    data = tmp_path / "data"
    make_synthetic(data, SynthSpec(classes=3, train=24, test=9, size=40, seed=4), progress=False)
    overrides = [f"data.root={data}", "data.val_per_class=2", "data.resize_size=36",
                 "data.crop_size=32", "data.workers=0", "model.name=smallcnn",
                 "model.pretrained=null", "batch_size=16", "epochs=1", "amp=none",
                 "device=cpu", "cam_curve_interval=0.05"]  # fmt: skip
    run = tmp_path / "run"
    train(load_config(None, overrides), run, progress=False)
    assert main(["evaluate", str(run), "--protocol", "sat_cub", "--quiet", "--workers", "0"]) == 0
    (folder,) = run.glob("eval_test_sat_cub_p*")  # a protocol changed from the preset's crop
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["protocol"]["center_crop"] == [36, 32] and metrics["protocol"]["ten_crop"]
    assert metrics["protocol"]["eval_size"] == [32, 32]
    assert metrics["loc"]["fixed_threshold"] == 0.4
    rows = pd.read_csv(folder / "per_image.csv")
    want = ((rows["iou_fixed"] >= 0.5) & (rows["top1_correct"] == 1)).astype(int)
    assert (rows["top1_loc_fixed_correct"] == want).all()
    boxes = pd.read_csv(folder / "boxes.csv")
    chosen = boxes[boxes["which"] == "chosen"]
    assert set(chosen["score_threshold"]) == {0.4} and len(chosen) == 9
    assert (boxes["x1"] < boxes["image_width"]).all() and (boxes["x0"] >= 0).all()
    # a gallery draws on the whole image: it refuses a centre-cropped evaluation
    assert main(["gallery", str(folder), "--out", str(tmp_path / "gallery")]) == 2
    assert "centre-crops the images" in capsys.readouterr().err
