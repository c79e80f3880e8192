"""Known answers from wpy1999/SAT's own evaluation code, as test fixtures.

SAT's published numbers come from its ``evaluator.py`` (CUB) and ``evaluator_ImageNet.py``
(ImageNet), whose ``val_loc_one_epoch`` scores each test image on the ground truth its test
loaders make (``DataLoader/CUB_200_2011.py`` and ``DataLoader/ILSVRC.py``, ``load_test_bbox``).
This script runs exactly those: it writes the two loaders' box files (CUB's
``test_list.txt`` / ``test_bounding_box.txt``, ImageNet's ``val_gt.txt`` with several boxes per
image, boxes that touch the image's edges and boxes wholly inside the 16-pixel border the crop
cuts off) to a temporary folder and reads them with the official ``load_test_bbox``; it makes
SAT maps (14 x 14 float32: blobs, a plateau, two equal blobs, a constant map) and logits (the
centre crop's and the ten crops') with a fixed generator; and it calls the official
``val_loc_one_epoch`` of both evaluators on them, through a stand-in model that returns those
maps and logits and a loader that yields the official ground truth. Per image it records what
the official code computed: each box and IoU (by wrapping its ``IoU``) and each 0 / 100 it
added to its meters (by wrapping its ``AverageMeter``). It writes
``tests/fixtures/sat_eval.npz``; ``tests/test_sat_protocol.py`` checks
``wsol evaluate --protocol sat_*`` against it without the official code.

How the committed fixtures were made (2026-12-03; numpy 2.4, scikit-image 0.26, OpenCV 5,
torch 2.14 CPU, timm 1.0)::

    mkdir /tmp/sat && git -C /path/to/SAT archive HEAD evaluator.py evaluator_ImageNet.py \\
        utils DataLoader Model | tar -x -C /tmp/sat
    python scripts/make_sat_eval_fixtures.py --sat /tmp/sat tests/fixtures

One shim lets the official code run on a machine without a GPU, touching no number: the
evaluators move every tensor to the GPU with ``.cuda()``, which here returns the tensor itself.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

NUM_CLASSES = 6
THRESHOLDS = (0.3, 0.35, 0.4, 0.45)  # train.py's --threshold list: both evaluators' defaults
SIZES = [(500, 375), (333, 500), (224, 224), (640, 427), (300, 300), (481, 320)]
IMAGES = 48
BATCH = 4  # 12 batches: evaluator_ImageNet.py prints every len(loader) // 10 steps


def make_case(dataset: str, seed: int = 20261203):
    """SAT maps (N, 14, 14) float32, centre logits (N, K), ten-crop logits (N, 10, K), labels
    (N,), sizes [(W, H)] and boxes [(G, 4) x0 y0 x1 y1 whole pixels] of every image."""
    import numpy as np

    rng = np.random.default_rng(seed + (dataset == "ILSVRC"))
    n = IMAGES
    yy, xx = np.mgrid[0:14, 0:14].astype(np.float32)
    maps = rng.uniform(0, 0.05, (n, 14, 14)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, n)
    sizes, boxes = [], []
    for i in range(n):
        w, h = SIZES[i % len(SIZES)]
        sizes.append((w, h))
        count = 1 if dataset == "CUB_200_2011" else 1 + i % 3
        image_boxes = []
        for g in range(count):
            bw, bh = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
            x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            if (i + g) % 5 == 0:  # touching the right and bottom edges: clipped to the crop
                x0, y0 = w - bw, h - bh
            if (i + g) % 11 == 7:  # inside the left border the crop cuts off: crossed
                x0, bw = 0.0, 0.04 * w
            image_boxes.append([round(x0), round(y0), round(x0 + bw), round(y0 + bh)])
        boxes.append(np.asarray(image_boxes, dtype=np.float64))
        for _ in range(1 + i % 2):  # one or two blobs
            cx, cy = rng.uniform(1, 13, 2)
            s = rng.uniform(1.0, 4.0)
            maps[i] += rng.uniform(0.3, 0.9) * np.exp(
                -((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s)
            )
        if i % 2 == 0:  # a blob on the first box, of about its size, in the crop's frame
            x0, y0, x1, y1 = image_boxes[0]
            cx, cy = (x0 + x1) / 2 / w * 14 - 0.5, (y0 + y1) / 2 / h * 14 - 0.5
            sx, sy = (x1 - x0) / w * 14 / 3, (y1 - y0) / h * 14 / 3
            maps[i] += 0.8 * np.exp(
                -((xx - cx) ** 2) / (2 * sx * sx) - ((yy - cy) ** 2) / (2 * sy * sy)
            )
        if i % 7 == 3:  # a plateau: ties at the top
            maps[i, 4:9, 3:10] = maps[i].max()
        if i % 9 == 4:  # two equal, separate blobs: the largest component is a tie
            maps[i] = 0.01
            maps[i, 2:5, 2:5] = 0.9
            maps[i, 9:12, 9:12] = 0.9
        if i == 5:  # a constant map: no pixel above any threshold
            maps[i] = 0.25
    logits = rng.normal(0, 1, (n, NUM_CLASSES)).astype(np.float32)
    logits[np.arange(n) % 3 != 0, labels[np.arange(n) % 3 != 0]] += 3.0  # two thirds correct
    ten = (logits[:, None, :] + rng.normal(0, 1.5, (n, 10, NUM_CLASSES))).astype(np.float32)
    return maps, logits, ten, labels, sizes, boxes


def official_gt(sat: Path, dataset: str, sizes, boxes, tmp: Path) -> list:
    """Each image's GT as the official ``load_test_bbox`` of ``dataset`` makes it."""
    names = [f"{i:03d}.Class/image_{i:03d}.jpg" for i in range(len(sizes))]
    if dataset == "CUB_200_2011":
        from DataLoader.CUB_200_2011 import load_test_bbox  # official

        (tmp / "test_list.txt").write_text("".join(f"{n};0\n" for n in names))
        lines = [f"{b[0][0]} {b[0][1]} {b[0][2]} {b[0][3]} {h} {w}\n"  # x0 y0 x1 y1 h w
                 for (w, h), b in zip(sizes, boxes)]  # fmt: skip
        (tmp / "test_bounding_box.txt").write_text("".join(lines))
        table = load_test_bbox(str(tmp), str(tmp / "test_list.txt"),
                               str(tmp / "test_bounding_box.txt"), 256, 224)  # fmt: skip
        folder = "test"
    else:
        from DataLoader.ILSVRC import load_test_bbox  # official

        lines = [f"{n} {w} {h} ; " + " ".join(str(int(v)) for v in b.reshape(-1)) + "\n"
                 for n, (w, h), b in zip(names, sizes, boxes)]  # fmt: skip
        (tmp / "val_gt.txt").write_text("".join(lines))
        table = load_test_bbox(str(tmp), str(tmp / "val_gt.txt"), 224, 256)
        folder = "val"
    import os

    import numpy as np

    gt = [table[os.path.join(str(tmp), folder, n).replace("/", "\\")] for n in names]
    if dataset == "ILSVRC":  # its __getitem__ passes the boxes on as one string
        gt = [" ".join(map(str, np.array(g).reshape(-1))) for g in gt]
    return gt


def official_answers(sat: Path, dataset: str, maps, logits, ten, labels, sizes, boxes) -> dict:
    import numpy as np
    import torch

    sys.path.insert(0, str(sat))
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # no GPU here; no number changes
    module = "evaluator" if dataset == "CUB_200_2011" else "evaluator_ImageNet"
    evaluator = __import__(module)  # official
    meters: list = []
    calls: list = []

    class Meter(evaluator.AverageMeter):
        def __init__(self):
            super().__init__()
            self.values: list = []
            meters.append(self)

        def updata(self, val, n=1.0):
            self.values.append(float(val))
            super().updata(val, n)

    official_iou = evaluator.IoU

    def iou(box_a, box_b):
        value = official_iou(box_a, box_b)
        calls.append((list(map(float, box_a)), float(value)))
        return value

    evaluator.AverageMeter, evaluator.IoU = Meter, iou

    class Model:  # returns the case's maps and logits for the images it is given
        def eval(self):
            return self

        def __call__(self, x, label=None, phase="test"):
            index = x.reshape(len(x), -1)[:, 0].long()
            if label is None:  # the ten crops of one image
                return torch.from_numpy(ten[int(index[0])]), None
            return torch.from_numpy(logits[index.numpy()]), torch.from_numpy(maps[index.numpy()])

    with tempfile.TemporaryDirectory() as tmp:
        gt = official_gt(sat, dataset, sizes, boxes, Path(tmp))
    tencrop = dataset == "CUB_200_2011"  # evaluator.py's default --tencrop True, ImageNet's False
    items = [(torch.tensor([float(i)]), torch.full((10, 1), float(i)), int(labels[i]), gt[i],
              f"image_{i}") for i in range(len(labels))]  # fmt: skip
    loader = [torch.utils.data.default_collate(items[s : s + BATCH])
              for s in range(0, len(items), BATCH)]  # fmt: skip
    args = argparse.Namespace(threshold=list(THRESHOLDS), crop_size=224, resize_size=256,
                              root=dataset, tencrop=tencrop, evaluate=True, save_img_flag=False,
                              save_box_flag=False)  # fmt: skip
    evaluator.val_loc_one_epoch(args, loader, Model())
    t = len(THRESHOLDS)
    cls_top1, cls_top5 = meters[0].values, meters[1].values
    named = ["iou30", "iou50", "iou70", "gt_known", "loc_top1", "loc_top5"]
    out: dict = {"cls_top1": np.asarray(cls_top1) / 100, "cls_top5": np.asarray(cls_top5) / 100}
    for k, name in enumerate(named):
        for j, thr in enumerate(THRESHOLDS):
            out[f"{name}_{thr:g}"] = np.asarray(meters[2 + k * t + j].values) / 100
    # the IoU calls: per image, per threshold, one per GT box (the loop's order)
    flat = [np.asarray(g.split() if isinstance(g, str) else g, dtype=np.float64).reshape(-1)
            for g in gt]  # fmt: skip
    counts = [len(f) // 4 for f in flat]
    position = 0
    box = {thr: [] for thr in THRESHOLDS}
    best = {thr: [] for thr in THRESHOLDS}
    for count in counts:
        for thr in THRESHOLDS:
            values = calls[position : position + count]
            position += count
            box[thr].append(values[0][0])
            top = -1.0
            for _, v in values:
                if v > top:
                    top = v
            best[thr].append(top)
    assert position == len(calls)
    for thr in THRESHOLDS:
        out[f"box_{thr:g}"] = np.asarray(box[thr], dtype=np.int64)
        out[f"iou_{thr:g}"] = np.asarray(best[thr], dtype=np.float64)
    out["gt_counts"] = np.asarray(counts)
    out["gt_boxes"] = np.concatenate(flat).reshape(-1, 4).astype(np.int64)
    sys.path.remove(str(sat))
    return out


def main(argv=None) -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sat", type=Path, required=True, help="the official code's folder")
    parser.add_argument("out", type=Path, help="folder of sat_eval.npz")
    args = parser.parse_args(argv)
    saved = {}
    for dataset, key in (("CUB_200_2011", "cub"), ("ILSVRC", "ilsvrc")):
        maps, logits, ten, labels, sizes, boxes = make_case(dataset)
        answers = official_answers(args.sat, dataset, maps, logits, ten, labels, sizes, boxes)
        case = dict(maps=maps, logits=logits, ten=ten, labels=labels, sizes=np.asarray(sizes),
                    box_counts=np.array([len(b) for b in boxes]), boxes=np.concatenate(boxes),
                    **answers)  # fmt: skip
        saved.update({f"{key}_{k}": v for k, v in case.items()})
        for thr in THRESHOLDS:
            k = f"{thr:g}"
            print(f"{dataset} threshold {k}: top-1 loc {answers[f'loc_top1_{k}'].mean() * 100:.2f}, "
                  f"GT-known {answers[f'gt_known_{k}'].mean() * 100:.2f}, "
                  f"cls top-1 {answers['cls_top1'].mean() * 100:.2f}")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / "sat_eval.npz", **saved)


if __name__ == "__main__":
    main()
