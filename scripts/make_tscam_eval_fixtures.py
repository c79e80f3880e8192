"""Known answers from vasgaowei/TS-CAM's own evaluation code, as test fixtures.

TS-CAM's published numbers come from its ``tools_cam/test_cam.py``, which scores each test
batch with ``evaluate_cls_loc`` (``lib/cams_deit.py``) on the ground truth its test loader
makes (``lib/datasets/imagenet.py``). This script runs exactly those: it writes a small
ILSVRC-layout test set (``ILSVRC2012_list/val_folder_new.txt`` with several boxes per image,
boxes that touch the image's edges, images of several sizes) to a temporary folder, reads it
with the official ``ImageNetDataset``, makes CAMs (blobs, noise, plateaus, a constant map) and
logits with a fixed generator, and calls the official ``evaluate_cls_loc`` at both paper
thresholds (configs/CUB 0.1, configs/ILSVRC 0.12). It also records, per image, the official
box (``resize_cam`` + ``get_bboxes``) and IoU (``cal_iou``) of the ground-truth class's CAM.
It writes ``tests/fixtures/tscam_eval.npz``; ``tests/test_tscam_protocol.py`` checks
``wsol evaluate --protocol tscam_*`` against it without the official code.

How the committed fixtures were made (2026-12-02; numpy 2, OpenCV 4, torch 2.14 CPU)::

    mkdir /tmp/tscam && git -C /path/to/TS-CAM archive HEAD lib | tar -x -C /tmp/tscam
    python scripts/make_tscam_eval_fixtures.py --tscam /tmp/tscam/lib tests/fixtures

Two shims let the official code run on today's libraries, neither touching a number: its
``evaluate_cls_loc`` passes ``np.int`` (gone from numpy 2) to ``draw_bbox``, so the script sets
``np.int = int``; and ``draw_bbox`` draws text on a float image, which OpenCV 5 refuses, so the
script replaces ``draw_bbox`` (a picture, saved only with ``TEST.SAVE_BOXED_IMAGE``, which is
off) by one that returns the image unchanged.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

NUM_CLASSES = 6
THRESHOLDS = (0.1, 0.12)
SIZES = [(500, 375), (333, 500), (224, 224), (640, 427), (300, 300), (481, 320)]
IMAGES = 48


def make_case(seed: int = 20261202):
    """CAMs (N, C, 14, 14) float32, logits (N, C), labels (N,), sizes [(W, H)] and boxes
    [(G, 4) x0 y0 x1 y1 floats] of every image."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = IMAGES
    yy, xx = np.mgrid[0:14, 0:14].astype(np.float32)
    cams = rng.normal(0, 0.05, (n, NUM_CLASSES, 14, 14)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, n)
    sizes, boxes = [], []
    for i in range(n):
        w, h = SIZES[i % len(SIZES)]
        sizes.append((w, h))
        count = 1 + i % 3
        image_boxes = []
        for g in range(count):
            bw, bh = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
            x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            if (i + g) % 5 == 0:  # touching the right and bottom edges: the loader clips them
                x0, y0 = w - bw, h - bh
            box = [x0, y0, x0 + bw, y0 + bh]
            if i % 4 == 0:
                box = [float(round(v)) for v in box]  # whole pixels, as CUB's and most ILSVRC's
            image_boxes.append(box)
        boxes.append(np.asarray(image_boxes, dtype=np.float64))
        for c in range(NUM_CLASSES):  # one or two blobs per class map
            for _ in range(1 + (i + c) % 2):
                cx, cy = rng.uniform(1, 13, 2)
                s = rng.uniform(1.0, 4.0)
                cams[i, c] += rng.uniform(0.5, 2.0) * np.exp(
                    -((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s)
                )
        if i % 2 == 0:  # the GT class's map on its first box, of about its size
            x0, y0, x1, y1 = image_boxes[0]
            cx, cy = (x0 + x1) / 2 / w * 14 - 0.5, (y0 + y1) / 2 / h * 14 - 0.5
            sx, sy = (x1 - x0) / w * 14 / 3, (y1 - y0) / h * 14 / 3
            cams[i, labels[i]] += 2.5 * np.exp(
                -((xx - cx) ** 2) / (2 * sx * sx) - ((yy - cy) ** 2) / (2 * sy * sy)
            )
        if i % 7 == 3:  # a plateau: ties at the top
            cams[i, labels[i], 4:9, 3:10] = cams[i, labels[i]].max()
        if i == 5:  # a constant map: no box but the fallback
            cams[i, labels[i]] = 0.25
    logits = rng.normal(0, 1, (n, NUM_CLASSES)).astype(np.float32)
    logits[np.arange(n) % 3 != 0, labels[np.arange(n) % 3 != 0]] += 3.0  # two thirds correct
    return cams, logits, labels, sizes, boxes


def write_ilsvrc(root: Path, labels, sizes, boxes) -> list[str]:
    """The official test loader's layout: val/<name>.JPEG and val_folder_new.txt lines
    ``<name>.JPEG <label> x1 y1 x2 y2 [x1 y1 x2 y2 ...]``."""
    import numpy as np
    from PIL import Image

    (root / "val").mkdir(parents=True)
    (root / "ILSVRC2012_list").mkdir()
    lines, names = [], []
    for i, (label, size, image_boxes) in enumerate(zip(labels, sizes, boxes)):
        name = f"ILSVRC2012_val_{i:08d}"
        names.append(name)
        pixels = np.full((size[1], size[0], 3), 127, dtype=np.uint8)
        Image.fromarray(pixels).save(root / "val" / f"{name}.JPEG")
        coords = " ".join(repr(float(v)) for v in image_boxes.reshape(-1))
        lines.append(f"{name}.JPEG {int(label)} {coords}\n")
    (root / "ILSVRC2012_list" / "val_folder_new.txt").write_text("".join(lines))
    return names


def official_answers(lib: Path, cams, logits, labels, sizes, boxes) -> dict:
    import numpy as np
    import torch

    np.int = int  # noqa: NPY001 (the official draw_bbox passes np.int, gone from numpy 2)
    sys.path.insert(0, str(lib))
    import cams_deit
    from cams_deit import evaluate_cls_loc, get_bboxes, resize_cam  # official

    cams_deit.draw_bbox = lambda image, *args, **kwargs: image  # a picture only (see above)
    from cams_deit import cal_iou as official_iou
    from datasets.imagenet import ImageNetDataset  # official
    from utils import AttrDict

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_ilsvrc(root, labels, sizes, boxes)
        for thr in THRESHOLDS:
            cfg = AttrDict()
            cfg.DATA = AttrDict(CROP_SIZE=224, RESIZE_SIZE=256,
                                IMAGE_MEAN=[0.485, 0.456, 0.406], IMAGE_STD=[0.229, 0.224, 0.225])  # fmt: skip
            cfg.TEST = AttrDict(TEN_CROPS=False, SAVE_BOXED_IMAGE=False)
            cfg.MODEL = AttrDict(CAM_THR=thr, TOP_K=1)
            cfg.BASIC = AttrDict(SAVE_DIR=tmp)
            data = ImageNetDataset(str(root), cfg, is_train=False)
            items = [data[i] for i in range(len(data))]
            images = torch.stack([it[0] for it in items])
            target = torch.tensor([it[1] for it in items])
            gt_strings = [it[2] for it in items]
            names = [it[3] for it in items]
            result = evaluate_cls_loc(images, target, gt_strings, torch.from_numpy(logits),
                                      torch.from_numpy(cams), names, cfg, 0)  # fmt: skip
            _, _, loc_top1, loc_top5, gt_known = result[:5]
            est, iou = [], []
            for b, gt in enumerate(gt_strings):  # the steps of evaluate_cls_loc's gt-known part
                cam = torch.from_numpy(cams)[b, [int(target[b])]].numpy().transpose(1, 2, 0)
                box = get_bboxes(resize_cam(cam, size=(224, 224)), cam_thr=thr)
                values = list(map(float, gt.split(" ")))
                best = 0
                for g in range(len(values) // 4):
                    v = official_iou(box, values[g * 4 : (g + 1) * 4])
                    if v > best:
                        best = v
                est.append(box)
                iou.append(float(np.asarray(best).reshape(-1)[0]))
            key = f"{thr:g}"
            out[f"loc_top1_{key}"] = np.asarray(loc_top1, dtype=np.float64)
            out[f"loc_top5_{key}"] = np.asarray(loc_top5, dtype=np.float64)
            out[f"gt_known_{key}"] = np.asarray(gt_known, dtype=np.float64)
            out[f"box_{key}"] = np.asarray(est, dtype=np.int64)
            out[f"iou_{key}"] = np.asarray(iou, dtype=np.float64)
            out["gt_strings"] = np.asarray(gt_strings)
    return out


def main(argv=None) -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tscam", type=Path, required=True, help="the official lib/ folder")
    parser.add_argument("out", type=Path, help="folder of tscam_eval.npz")
    args = parser.parse_args(argv)
    cams, logits, labels, sizes, boxes = make_case()
    answers = official_answers(args.tscam, cams, logits, labels, sizes, boxes)
    counts = np.array([len(b) for b in boxes])
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out / "tscam_eval.npz",
        cams=cams,
        logits=logits,
        labels=labels,
        sizes=np.asarray(sizes),
        box_counts=counts,
        boxes=np.concatenate(boxes),
        **answers,
    )
    for thr in THRESHOLDS:
        k = f"{thr:g}"
        print(f"CAM_THR {k}: top-1 loc {answers[f'loc_top1_{k}'].mean() * 100:.2f}, "
              f"top-5 loc {answers[f'loc_top5_{k}'].mean() * 100:.2f}, "
              f"GT-known {answers[f'gt_known_{k}'].mean() * 100:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
