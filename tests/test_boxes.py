"""Boxes out: every evaluation's boxes.csv and boxes_coco.json, in the original image's pixels,
and the boxes of a folder of unlabelled images (`wsol evaluate RUN --images FOLDER`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsol.cli import main
from wsol.localize import box_to_image


def test_grid_boxes_map_onto_the_images_pixels():
    # grid pixel x of a 224 grid covers image columns [2x, 2x + 2) of a 448-pixel image
    assert box_to_image((56, 28, 111, 83), (224, 224), (448, 448)) == (112, 56, 223, 167)
    # the whole grid is the whole image, whatever its size
    assert box_to_image((0, 0, 223, 223), (224, 224), (500, 333)) == (0, 0, 499, 332)
    # a one-pixel box of a 224 grid on a 100-pixel image stays inside it
    assert box_to_image((223, 223, 223, 223), (224, 224), (100, 100)) == (99, 99, 99, 99)


def _write_set(root: Path) -> tuple[Path, Path]:
    meta, cams = root / "meta", root / "cams"
    meta.mkdir(parents=True)
    ids = ["a.jpg", "b.jpg"]
    (meta / "image_ids.txt").write_text("".join(i + "\n" for i in ids))
    (meta / "class_labels.txt").write_text("a.jpg,0\nb.jpg,1\n")
    (meta / "image_sizes.txt").write_text("a.jpg,448,448\nb.jpg,224,112\n")
    (meta / "localization.txt").write_text("a.jpg,112,56,223,167\nb.jpg,0,0,100,50\n")
    cams.mkdir()
    for image_id in ids:
        cam = np.zeros((224, 224), np.float32)
        cam[28:84, 56:112] = 1.0  # one square blob: its box is the blob's
        np.save(cams / f"{image_id}.npy", cam)
    return meta, cams


def test_an_evaluation_writes_its_boxes_in_image_pixels(tmp_path):
    meta, cams = _write_set(tmp_path)
    out = tmp_path / "eval"
    # nearest resize keeps the blob's edges, so the boxes are known exactly
    assert main(["evaluate", "--cams", str(cams), "--metadata", str(meta), "--out", str(out),
                 "--quiet", "--threshold", "0.5", "--interpolation", "nearest"]) == 0  # fmt: skip
    with open(out / "boxes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    chosen = {r["image_id"]: r for r in rows if r["which"] == "chosen"}
    assert set(chosen) == {"a.jpg", "b.jpg"}
    a, b = chosen["a.jpg"], chosen["b.jpg"]
    assert float(a["score_threshold"]) == 0.5
    # the reference's box of a contour is (x, y, x + w, y + h) of cv2.boundingRect, capped at
    # W - 1 (wsolevaluation evaluation.py, compute_bboxes_from_scoremaps): on the grid
    # (56, 28, 112, 84) for the blob of columns 56..111; doubled onto a 448-pixel image
    assert [int(a[k]) for k in ("x0", "y0", "x1", "y1")] == [112, 56, 225, 169]
    # b is 224 x 112: columns as on the grid, rows halved
    assert [int(b[k]) for k in ("x0", "y0", "x1", "y1")] == [56, 14, 112, 42]
    assert (int(b["image_width"]), int(b["image_height"])) == (224, 112)
    # the mean score inside the box: the blob, and one column and row of background
    assert float(a["score"]) == pytest.approx(56 * 56 / (57 * 57))
    # and at the best threshold of each IoU
    assert {r["which"] for r in rows} == {"chosen", "best@30", "best@50", "best@70"}
    coco = json.loads((out / "boxes_coco.json").read_text())
    assert [i["file_name"] for i in coco["images"]] == ["a.jpg", "b.jpg"]
    first = coco["annotations"][0]
    assert first["bbox"] == [112, 56, 114, 114] and first["category_id"] == 0  # x, y, w, h
    assert len(coco["annotations"]) == 2  # the chosen boxes only


def test_boxes_of_a_folder_of_unlabelled_images(tmp_path, synth_root):
    from conftest import cpu_run

    from wsol.config import load_config
    from wsol.predict import list_images
    from wsol.train import train

    run = tmp_path / "run"
    train(load_config(None, cpu_run(synth_root, **{"data.val_per_class": 2})), run,
          progress=False, echo=False)  # fmt: skip
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, size in (("x.jpg", (60, 40)), ("sub/y.png", (33, 50)), ("sub/z.JPG", (48, 48))):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    assert len(list_images(folder)) == 3
    out = tmp_path / "boxes"
    assert main(["evaluate", str(run), "--images", str(folder), "--out", str(out), "--quiet",
                 "--workers", "0", "--threshold", "0.3"]) == 0  # fmt: skip
    with open(out / "boxes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["image_id"] for r in rows} == {"x.jpg", "sub/y.png", "sub/z.JPG"}
    for r in rows:
        w, h = int(r["image_width"]), int(r["image_height"])
        assert 0 <= int(r["x0"]) <= int(r["x1"]) < w and 0 <= int(r["y0"]) <= int(r["y1"]) < h
        assert r["which"] == "chosen" and float(r["score_threshold"]) == 0.3
    sizes = {r["image_id"]: (int(r["image_width"]), int(r["image_height"])) for r in rows}
    assert sizes["x.jpg"] == (60, 40) and sizes["sub/y.png"] == (33, 50)
    assert len(list((out / "overlays").glob("*.png"))) == 3
    with open(out / "predictions.csv", newline="") as f:
        predictions = list(csv.DictReader(f))
    assert len(predictions) == 3 and all(0 < float(p["probability"]) <= 1 for p in predictions)
    # without --threshold: the one that is best on the run's val split
    assert main(["evaluate", str(run), "--images", str(folder), "--out", str(tmp_path / "b"),
                 "--quiet", "--workers", "0", "--no-overlays"]) == 0  # fmt: skip
    assert not (tmp_path / "b" / "overlays").exists()
    context = json.loads((tmp_path / "b" / "context.json").read_text())
    assert 0 <= context["threshold"] <= 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", str(run), "--images", str(empty), "--out", str(tmp_path / "c")]) == 2
