"""Known answers from clovaai/wsolevaluation's own evaluator, as test fixtures.

Two steps, in two environments (the reference needs NumPy < 1.24 for ``np.float`` and is not a
dependency of ours):

1. ``inputs`` (our environment) writes the cases into ``tests/fixtures/wsolevaluation/``:
   ``cams.npz`` (raw CAMs of every size, float64), ``boxes/`` (wsolevaluation box metadata),
   ``masks/`` (OpenImages-style mask metadata) and ``mask_files/`` (mask PNGs).
2. ``reference`` (the reference's environment) runs the reference's unmodified code on them
   (``inference.normalize_scoremap`` after ``cv2.resize(..., INTER_CUBIC)`` as its
   ``CAMComputer`` does, then ``evaluation.BoxEvaluator`` in both contour modes and
   ``evaluation.MaskEvaluator``) and writes ``expected.json``.

How the committed fixtures were made (2026-11-25; Python 3.11.7; reference at
clovaai/wsolevaluation's default branch, the files evaluation.py, inference.py, util.py,
config.py, data_loaders.py; reference environment: numpy 1.23.5, opencv-python-headless
4.8.1.78 and munch in a venv of their own, which also sees our environment's torch, torchvision
and pillow through a .pth file, for the reference modules' import-time ``torch.utils.data`` and
``torchvision.transforms`` imports, which the evaluator does not use)::

    python scripts/make_reference_fixtures.py inputs tests/fixtures/wsolevaluation
    python3 -m venv /tmp/refenv
    /tmp/refenv/bin/pip install numpy==1.23.5 opencv-python-headless==4.8.1.78 munch
    python -c "import site; print(site.getsitepackages()[0])" \
        > /tmp/refenv/lib/python3.11/site-packages/zz_wsol_env.pth
    mkdir /tmp/wsolref && git -C /path/to/wsolevaluation archive HEAD evaluation.py \
        inference.py util.py config.py data_loaders.py | tar -x -C /tmp/wsolref
    /tmp/refenv/bin/python scripts/make_reference_fixtures.py reference \\
        tests/fixtures/wsolevaluation --wsolevaluation /tmp/wsolref

The ``reference`` step imports only NumPy, OpenCV and the reference's modules, never ``wsol``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

INTERVAL = 0.001  # the reference's default cam_curve_interval
IOUS = [30, 50, 70]
SIZE = 224


# ------------------------------------------------------------------------------- the cases
def _cases():
    """(image_id, raw CAM, (width, height), GT boxes x0 y0 x1 y1 in original pixels)."""
    import numpy as np

    rng = np.random.default_rng(20261125)
    cases = []

    def add(name, cam, size, boxes):
        cases.append((f"c/{len(cases):03d}_{name}.jpg", np.asarray(cam, np.float64), size, boxes))

    def blank(h=SIZE, w=SIZE):
        return np.zeros((h, w))

    # several blobs: single and multi contour differ; boxes from any contour may hit the GT
    m = blank()
    m[20:80, 30:120] = 1.0
    m[150:200, 140:210] = 0.6
    m[100:110, 10:20] = 0.9
    add("three_blobs", m, (448, 448), [[280, 300, 420, 400]])
    add("three_blobs_gt_big", m, (224, 224), [[30, 20, 119, 79]])
    # a ring: the hole is a contour of its own (RETR_TREE)
    m = blank()
    m[40:180, 40:180] = 0.8
    m[80:140, 80:140] = 0.0
    m[100:120, 100:120] = 1.0  # an island in the hole
    add("ring_with_island", m, (500, 375), [[180, 130, 310, 230], [10, 10, 60, 60]])
    # ties: two blobs of equal area (single contour takes the first listed)
    m = blank()
    m[10:50, 10:50] = 1.0
    m[150:190, 150:190] = 1.0
    add("tie_equal_area", m, (300, 200), [[200, 135, 255, 170]])
    m = blank()
    m[150:190, 10:50] = 1.0
    m[10:50, 150:190] = 1.0
    add("tie_mirrored", m, (224, 224), [[10, 150, 49, 189]])
    # border blobs: boxes touch the image edge (x1, y1 capped at W - 1, H - 1)
    m = blank()
    m[:, 200:] = 1.0
    m[0:30, 0:30] = 0.7
    add("border", m, (640, 480), [[571, 0, 639, 479]])
    m = blank()
    m[180:, 180:] = np.linspace(0.2, 1.0, 44)[None, :]
    add("corner_ramp", m, (224, 224), [[170, 170, 223, 223]])
    # nothing above most thresholds: one bright pixel, a zero map, a constant map
    m = blank()
    m[111, 57] = 1.0
    add("one_pixel", m, (224, 224), [[50, 100, 60, 120]])
    add("zero", blank(), (224, 224), [[0, 0, 223, 223]])
    add("constant", np.full((SIZE, SIZE), 0.37), (224, 224), [[0, 0, 223, 223]])
    add("constant_lowres", np.full((14, 14), 0.3), (333, 250), [[0, 0, 332, 249]])
    # nested levels, diagonal touching (8-connectivity), thin lines
    m = blank()
    for k, v in enumerate(np.linspace(0.1, 1.0, 10)):
        m[10 + 10 * k : 214 - 10 * k, 10 + 10 * k : 214 - 10 * k] = v
    add("nested_levels", m, (400, 300), [[100, 80, 300, 220]])
    m = blank()
    for k in range(0, 120, 2):
        m[50 + k, 50 + k] = 1.0
    m[60:62, 140:200] = 0.5
    add("diagonal_line", m, (224, 224), [[50, 50, 169, 169]])
    # blocky random maps with noise (56 x 56, upsampled by the bicubic resize), several GT boxes
    for k in range(6):
        small = rng.random((8, 8))
        m = np.kron(small, np.ones((7, 7))) + 0.05 * rng.random((56, 56))
        w, h = int(rng.integers(120, 600)), int(rng.integers(120, 600))
        boxes = []
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
            boxes.append([x0, y0, int(rng.integers(x0, w)), int(rng.integers(y0, h))])
        add(f"random_{k}", m, (w, h), boxes)
    # raw low-resolution CAMs (through the reference's bicubic resize), negative values too
    for k, side in enumerate((7, 7, 14, 14, 28, 28, 10, 17)):
        cam = rng.normal(size=(side, side)) * (3.0 if k % 2 else 0.01)
        cam[side // 3 : side // 2 + 1, side // 4 : side // 2 + 2] += 2.0
        w, h = int(rng.integers(100, 500)), int(rng.integers(100, 500))
        boxes = [[int(w * 0.2), int(h * 0.3), int(w * 0.55), int(h * 0.6)]]
        add(f"lowres_{side}_{k}", cam, (w, h), boxes)
    cam = rng.normal(size=(14, 21))  # a non-square CAM
    add("lowres_14x21", cam, (321, 123), [[10, 5, 300, 100]])
    return cases


def _mask_cases():
    """(image_id, {instance name: (H, W) bool}, ignore (H, W) bool, raw CAM) with
    masks at odd original sizes (nearest resize to 224 differs from bilinear there)."""
    import numpy as np

    rng = np.random.default_rng(7)
    out = []
    for k, (h, w) in enumerate([(97, 61), (224, 224), (301, 450), (50, 50), (123, 77), (400, 90)]):
        yy, xx = np.mgrid[0:h, 0:w]
        inst = {}
        cy, cx = h * (0.3 + 0.4 * rng.random()), w * (0.3 + 0.4 * rng.random())
        inst["a"] = ((yy - cy) / (0.25 * h)) ** 2 + ((xx - cx) / (0.2 * w)) ** 2 < 1
        if k % 2:
            inst["b"] = (yy < h // 4) & (xx < w // 3)
        # the ignore region: a box that overlaps the object (the reference subtracts the object)
        ignore = (yy > h // 2) & (xx > w // 2)
        cam = np.kron(rng.random((7, 7)), np.ones((3, 3))) + 0.5 * np.exp(
            -(((np.mgrid[0:21, 0:21][0] - 10) / 5.0) ** 2)
        )
        out.append((f"m/{k:02d}.jpg", inst, ignore, cam))
    return out


def _write_metadata(folder: Path, ids, labels, sizes, locs) -> None:
    """The four files of a wsolevaluation metadata folder."""
    for name, lines in (
        ("image_ids.txt", ids),
        ("class_labels.txt", labels),
        ("image_sizes.txt", sizes),
        ("localization.txt", locs),
    ):
        (folder / name).write_text("\n".join(lines) + "\n")


def write_inputs(out: Path) -> None:
    """Write the cases as wsolevaluation metadata, mask PNGs and one npz of raw CAMs."""
    import numpy as np
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    cams = {}
    boxes_dir = out / "boxes"
    boxes_dir.mkdir(exist_ok=True)
    ids, labels, sizes, locs = [], [], [], []
    for image_id, cam, (w, h), boxes in _cases():
        cams[image_id] = cam
        ids.append(image_id)
        labels.append(f"{image_id},0")
        sizes.append(f"{image_id},{w},{h}")
        locs += [f"{image_id},{x0},{y0},{x1},{y1}" for x0, y0, x1, y1 in boxes]
    _write_metadata(boxes_dir, ids, labels, sizes, locs)

    masks_dir, files = out / "masks", out / "mask_files"
    masks_dir.mkdir(exist_ok=True)
    ids, labels, sizes, locs = [], [], [], []
    for image_id, instances, ignore, cam in _mask_cases():
        cams[image_id] = cam
        h, w = next(iter(instances.values())).shape
        ids.append(image_id)
        labels.append(f"{image_id},0")
        sizes.append(f"{image_id},{w},{h}")
        stem = image_id.removesuffix(".jpg")
        ignore_rel = f"{stem}_ignore.png"
        (files / ignore_rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ignore.astype(np.uint8) * 255).save(files / ignore_rel)
        for n, (name, mask) in enumerate(instances.items()):
            rel = f"{stem}_{name}.png"
            (files / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask.astype(np.uint8) * 255).save(files / rel)
            locs.append(f"{image_id},{rel},{ignore_rel if n == 0 else ''}")
    _write_metadata(masks_dir, ids, labels, sizes, locs)
    np.savez_compressed(out / "cams.npz", **cams)
    print(f"wrote {len(cams)} CAMs and their metadata to {out}")


# ------------------------------------------------------------------------ the reference run
def run_reference(out: Path, reference: Path) -> None:
    """Evaluate the written cases with the reference's own code; write expected.json."""
    import cv2
    import numpy as np

    sys.path.insert(0, str(reference))
    sys.argv = sys.argv[:1]  # its modules parse no arguments at import, but be safe
    from evaluation import BoxEvaluator, MaskEvaluator, configure_metadata  # noqa: I001
    from inference import normalize_scoremap

    cams = np.load(out / "cams.npz")
    thresholds = list(np.arange(0, 1, INTERVAL))

    def prepared(image_id):
        # CAMComputer.compute_and_evaluate_cams: resize to the image size, then normalise
        cam = np.array(cams[image_id], dtype=np.float64)
        return normalize_scoremap(cv2.resize(cam, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC))

    expected = {
        "interval": INTERVAL,
        "iou_thresholds": IOUS,
        "versions": {"numpy": np.__version__, "cv2": cv2.__version__},
        "box": {},
        "scoremaps": {},
    }
    box_meta = configure_metadata(str(out / "boxes"))
    for mode, multi in (("single", False), ("multi", True)):
        ev = BoxEvaluator(
            metadata=box_meta,
            dataset_name="CUB",
            split="test",
            cam_threshold_list=thresholds,
            iou_threshold_list=IOUS,
            mask_root=None,
            multi_contour_eval=multi,
        )
        for image_id in ev.image_ids:
            ev.accumulate(prepared(image_id), image_id)
        max_box_acc = ev.compute()
        expected["box"][mode] = {
            "images": ev.cnt,
            "num_correct": {str(d): ev.num_correct[d].astype(int).tolist() for d in IOUS},
            "max_box_acc": {str(d): float(v) for d, v in zip(IOUS, max_box_acc)},
            "best_threshold": {
                str(d): float(thresholds[int(np.argmax(ev.num_correct[d]))]) for d in IOUS
            },
        }
        # per-image correctness curves at IoU 50, as one image at a time gives them
        if mode == "single":
            per_image = {}
            for image_id in ev.image_ids:
                one = BoxEvaluator(
                    metadata=box_meta,
                    dataset_name="CUB",
                    split="test",
                    cam_threshold_list=thresholds,
                    iou_threshold_list=[50],
                    mask_root=None,
                    multi_contour_eval=False,
                )
                one.accumulate(prepared(image_id), image_id)
                per_image[image_id] = int(one.num_correct[50].sum())
            expected["box"]["single"]["correct_thresholds_per_image"] = per_image
    expected["MaxBoxAccV2"] = float(np.mean(list(expected["box"]["multi"]["max_box_acc"].values())))
    for image_id in cams.files:
        m = prepared(image_id)
        u8 = (m * 255).astype(np.uint8)
        expected["scoremaps"][image_id] = {
            "sum": float(m.sum()),
            "uint8_histogram": np.bincount(u8.ravel(), minlength=256).tolist(),
        }

    mask_meta = configure_metadata(str(out / "masks"))
    ev = MaskEvaluator(
        metadata=mask_meta,
        dataset_name="OpenImages",
        split="test",
        cam_threshold_list=thresholds,
        iou_threshold_list=IOUS,
        mask_root=str(out / "mask_files"),
        multi_contour_eval=False,
    )
    for image_id in ev.mask_paths:
        ev.accumulate(prepared(image_id), image_id)
    expected["mask"] = {
        "PxAP": float(ev.compute()),
        "gt_true_score_hist": ev.gt_true_score_hist.astype(int).tolist(),
        "gt_false_score_hist": ev.gt_false_score_hist.astype(int).tolist(),
    }
    (out / "expected.json").write_text(json.dumps(expected, indent=0, sort_keys=True) + "\n")
    print(f"wrote {out / 'expected.json'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=("inputs", "reference"))
    parser.add_argument("out", type=Path)
    parser.add_argument("--wsolevaluation", type=Path, help="a checkout of the reference")
    args = parser.parse_args()
    if args.step == "inputs":
        write_inputs(args.out)
    else:
        if args.wsolevaluation is None:
            parser.error("reference needs --wsolevaluation PATH")
        run_reference(args.out, args.wsolevaluation)


if __name__ == "__main__":
    main()
