import csv
import json
from pathlib import Path

import numpy as np
import pytest

from wsol.cli import main
from wsol.data import convert_cub, read_wsol_metadata


@pytest.fixture
def cam_setup(synth_root: Path, tmp_path: Path):
    written = convert_cub(synth_root, tmp_path / "meta", val_per_class=0)
    test_meta = written["test"]
    split = read_wsol_metadata(test_meta, synth_root / "images", synth_root / "segmentations")
    cams = tmp_path / "cams"
    rng = np.random.default_rng(0)
    for r in split.records:
        w, h = r.size
        x0, y0, x1, y1 = (int(v) for v in r.boxes[0])
        cam = rng.random((h, w)) * 0.2
        cam[y0 : y1 + 1, x0 : x1 + 1] += 1.0  # a CAM on the GT box, at the original size
        path = cams / (r.image_id + ".npy")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, cam)
    return test_meta, cams, split


def test_cli_writes_json_and_csv(cam_setup, synth_root, tmp_path, capsys):
    meta, cams, split = cam_setup
    out = tmp_path / "out"
    args = [
        "evaluate",
        "--cams",
        str(cams),
        "--metadata",
        str(meta),
        "--masks",
        str(synth_root / "segmentations"),
    ]
    assert (
        main(
            [
                *args,
                "--out",
                str(out),
                "--quiet",
                "--cam-curve-interval",
                "0.01",
                "--threshold",
                "0.3",
            ]
        )
        == 0
    )
    result = json.loads((out / "metrics.json").read_text())
    assert result["images"] == len(split)
    assert result["MaxBoxAcc"] >= 90.0  # CAMs drawn on the GT boxes localize
    assert 0 < result["PxAP"] <= 100
    assert result["protocol"]["cam_curve_interval"] == 0.01
    assert result["loc"]["fixed_threshold"] == pytest.approx(0.3)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    metrics = {r["metric"]: float(r["value"]) for r in rows}
    assert metrics["MaxBoxAccV2"] == result["MaxBoxAccV2"]
    assert {r["cam_curve_interval"] for r in rows} == {"0.01"}
    assert "MaxBoxAccV2" in capsys.readouterr().out


def test_predictions_give_top1_loc(cam_setup, tmp_path):
    meta, cams, split = cam_setup
    preds = tmp_path / "preds.csv"
    lines = ["image_id,top5"] + [
        f"{r.image_id},{(r.label + i % 2) % 4} 0 1 2 3" for i, r in enumerate(split.records)
    ]
    preds.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o"
    assert (
        main(
            [
                "evaluate",
                "--cams",
                str(cams),
                "--metadata",
                str(meta),
                "--predictions",
                str(preds),
                "--out",
                str(out),
                "--quiet",
                "--cam-curve-interval",
                "0.05",
            ]
        )
        == 0
    )
    result = json.loads((out / "metrics.json").read_text())
    assert result["classification"]["top1_acc"] == 50.0
    assert result["classification"]["top5_acc"] == 100.0
    assert result["loc"]["top1_loc@best"] <= result["loc"]["gt_known_loc@best"]


def test_missing_and_invalid_cams_name_the_image(cam_setup, tmp_path, capsys):
    meta, cams, split = cam_setup
    victim = split.records[3].image_id
    args = [
        "evaluate",
        "--cams",
        str(cams),
        "--metadata",
        str(meta),
        "--out",
        str(tmp_path / "x"),
        "--quiet",
    ]
    np.save(cams / (victim + ".npy"), np.full((5, 5), np.nan))
    assert main(args) == 2
    assert f"CAM of {victim} contains NaN" in capsys.readouterr().err
    (cams / (victim + ".npy")).unlink()
    assert main(args) == 2
    assert f"no CAM for image {victim}" in capsys.readouterr().err
