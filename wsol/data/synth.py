"""A synthetic WSOL data set written in the CUB-200-2011 layout.

Each image holds one object on a cluttered background. The object has

* a **body**: a rotated super-ellipse whose texture is class-specific but subtle (classes share
  body colours in pairs and differ by the orientation and period of their stripes), and
* a **head**: a small disc at one end of the body whose colour alone identifies the class.

So a classifier can be right by looking only at the head, exactly the situation in which CAMs
cover only the most discriminative part and WSOL methods (CutMix among them) claim to help. The
ground-truth box is the tight box of the whole object (body and head); the object mask is written
as a CUB-style segmentation PNG (0 or 255), for PxAP.

Objects vary in position, rotation, shape (super-ellipse exponent), aspect ratio and scale (about
10% to 70% of the image area); images vary in size (``size`` to ``1.25 * size`` per side).
Everything is drawn from a generator seeded by (seed, image index): the output is a pure function
of the arguments.

:func:`make_synthetic_openimages` writes the same kind of images in wsolevaluation's OpenImages
layout instead: images under ``OpenImages/{train,val,test}/<class>/``, instance masks and ignore
masks under ``masks/OpenImages/{val,test}/<class>/`` and the metadata (mask paths in
``localization.txt``, no boxes, no sizes) under ``metadata/OpenImages/{train,val,test}/``, so
that PxAP and the OpenImages recipes run end to end.
"""

from __future__ import annotations

import colorsys
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .cub import write_cub
from .records import DatasetSplit, ImageRecord


@dataclass(frozen=True)
class SynthSpec:
    """Arguments of :func:`make_synthetic`; saved as ``synth.json`` beside the data."""

    classes: int = 10
    train: int = 1000
    test: int = 500
    size: int = 64
    seed: int = 0
    image_format: str = "jpg"  # jpg or png
    min_area: float = 0.10
    max_area: float = 0.70


def class_style(label: int, num_classes: int) -> dict:
    """The class-specific appearance of ``label``: head colour, body colours and stripes."""
    head_rgb = colorsys.hsv_to_rgb(label / num_classes, 1.0, 1.0)
    pair = label // 2
    body_hue = (pair * 0.381966 + 0.1) % 1.0  # golden-angle spacing of the shared body colours
    body_a = colorsys.hsv_to_rgb(body_hue, 0.45, 0.75)
    body_b = colorsys.hsv_to_rgb((body_hue + 0.5) % 1.0, 0.35, 0.45)
    return {
        "head": np.array(head_rgb) * 255.0,
        "body_a": np.array(body_a) * 255.0,
        "body_b": np.array(body_b) * 255.0,
        "stripe_angle": 0.0 if label % 2 == 0 else math.pi / 2,  # relative to the body's axis
        "stripe_period": 3.0 + (label * 7 % 5) * 0.75,  # pixels at size 64
    }


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random colour field with clutter: lines, blobs and rectangles."""
    coarse = rng.uniform(40, 215, size=(4, 4, 3)).astype(np.float32)
    img = np.asarray(
        Image.fromarray(coarse.astype(np.uint8)).resize((w, h), Image.BICUBIC), dtype=np.float32
    )
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(rng.integers(6, 14)):
        colour = rng.uniform(30, 225, size=3) * rng.uniform(0.6, 1.0)
        kind = rng.integers(3)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        if kind == 0:  # blob
            r = rng.uniform(1.5, 0.12 * min(h, w))
            m = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        elif kind == 1:  # line
            angle = rng.uniform(0, math.pi)
            dist = np.abs((xx - cx) * math.sin(angle) - (yy - cy) * math.cos(angle))
            along = np.abs((xx - cx) * math.cos(angle) + (yy - cy) * math.sin(angle))
            m = (dist <= rng.uniform(0.5, 1.5)) & (along <= rng.uniform(0.1, 0.5) * max(h, w))
        else:  # rectangle
            hw, hh = rng.uniform(1, 0.1 * w), rng.uniform(1, 0.1 * h)
            m = (np.abs(xx - cx) <= hw) & (np.abs(yy - cy) <= hh)
        img[m] = colour
    return img


def render_example(index: int, label: int, spec: SynthSpec) -> tuple[np.ndarray, np.ndarray]:
    """Draw image ``index`` of class ``label``: (H, W, 3) uint8 image and (H, W) bool mask."""
    rng = np.random.default_rng([spec.seed, index])
    s = spec.size
    w, h = (int(v) for v in rng.integers(s, int(round(1.25 * s)) + 1, size=2))
    img = _background(rng, h, w)
    style = class_style(label, spec.classes)

    area = rng.uniform(spec.min_area, spec.max_area) * w * h
    aspect = math.exp(rng.uniform(0.0, math.log(2.5)))
    exponent = rng.uniform(2.0, 4.0)
    theta = rng.uniform(0, 2 * math.pi)
    # area of |x/a|^n + |y/b|^n <= 1 is 4ab * Gamma(1+1/n)^2 / Gamma(1+2/n); the head adds ~8%
    shape_area = 4 * math.gamma(1 + 1 / exponent) ** 2 / math.gamma(1 + 2 / exponent)
    b = math.sqrt(area / 1.08 / (shape_area * aspect))
    a = aspect * b
    c, si = math.cos(theta), math.sin(theta)
    for _ in range(60):  # shrink until the whole object fits inside the image
        r_head = max(1.5, 0.45 * b)
        hx, hy = 0.95 * a * c, 0.95 * a * si
        ex = math.sqrt((a * c) ** 2 + (b * si) ** 2)
        ey = math.sqrt((a * si) ** 2 + (b * c) ** 2)
        x_lo, x_hi = min(-ex, hx - r_head), max(ex, hx + r_head)
        y_lo, y_hi = min(-ey, hy - r_head), max(ey, hy + r_head)
        if x_hi - x_lo <= w - 2 and y_hi - y_lo <= h - 2:
            break
        a, b = a * 0.95, b * 0.95
    cx = rng.uniform(-x_lo, w - 1 - x_hi)
    cy = rng.uniform(-y_lo, h - 1 - y_hi)

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xx - cx) * c + (yy - cy) * si  # along the body axis
    v = -(xx - cx) * si + (yy - cy) * c
    body = np.abs(u / a) ** exponent + np.abs(v / b) ** exponent <= 1.0
    head = (xx - cx - hx) ** 2 + (yy - cy - hy) ** 2 <= r_head**2

    # body texture: stripes across or along the axis, jittered colours and phase
    period = style["stripe_period"] * s / 64.0 * rng.uniform(0.85, 1.15)
    coord = u if style["stripe_angle"] == 0.0 else v
    stripes = (np.sin(2 * math.pi * coord / period + rng.uniform(0, 2 * math.pi)) > 0)[..., None]
    jitter = rng.uniform(0.8, 1.2)
    body_colour = np.where(stripes, style["body_a"], style["body_b"]) * jitter
    img[body] = body_colour[body]
    # head: the class colour with a dark eye (small, highly discriminative)
    img[head] = style["head"] * rng.uniform(0.85, 1.0)
    ex_, ey_ = cx + hx * 1.1, cy + hy * 1.1
    eye = (xx - ex_) ** 2 + (yy - ey_) ** 2 <= max(0.6, 0.25 * r_head) ** 2
    img[eye & head] = 20.0

    img += rng.normal(0, 6.0, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), body | head


def tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the first and last foreground column and row (inclusive pixels)."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def ignore_band(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """The pixels within ``width`` of the object's outline (dilated minus eroded): an ignore
    region like OpenImages' uncertain object borders."""
    import cv2

    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    m = mask.astype(np.uint8)
    return (cv2.dilate(m, kernel) > 0) & ~(cv2.erode(m, kernel) > 0)


def make_synthetic_openimages(
    out: str | Path, spec: SynthSpec | None = None, val: int = 25, progress: bool = True
) -> dict[str, Path]:
    """Write the synthetic set in wsolevaluation's OpenImages layout under ``out``: ``spec.train``
    training and ``spec.test`` test images, and ``val`` val (train-fullsup) images per class (the
    reference's OpenImages val holds 25 per class and trains with 5 of them).

    Returns the roots a config needs: ``root`` (``out/OpenImages``), ``masks``
    (``out/masks/OpenImages``) and ``metadata`` (``out/metadata/OpenImages``). Each val and
    test image has one instance mask (0 or 255) and an ignore mask (a band along the object's
    outline), whose path stands on the image's first localization line, as the reference's.
    """
    spec = spec or SynthSpec()
    if spec.image_format not in ("jpg", "png"):
        raise ValueError("image_format must be jpg or png")
    out = Path(out)
    roots = {
        "root": out / "OpenImages",
        "masks": out / "masks" / "OpenImages",
        "metadata": out / "metadata" / "OpenImages",
    }
    names = [f"synth{k:03d}" for k in range(spec.classes)]
    counts = {"train": spec.train, "val": val * spec.classes, "test": spec.test}
    total = sum(counts.values())
    bar = tqdm(total=total, desc="synth", unit="img", disable=not progress)
    index = 0
    for split, count in counts.items():
        ids, labels, localization = [], [], []
        for _ in range(count):
            label = index % spec.classes
            image, mask = render_example(index, label, spec)
            stem = f"{split}/{names[label]}/{index:06d}"
            image_id = f"{stem}.{spec.image_format}"
            path = roots["root"] / image_id
            path.parent.mkdir(parents=True, exist_ok=True)
            pil = Image.fromarray(image)
            pil.save(path, quality=92) if spec.image_format == "jpg" else pil.save(path)
            ids.append(image_id)
            labels.append(f"{image_id},{label}")
            if split != "train":
                mask_id, ignore_id = f"{stem}_m{names[label]}_0.png", f"{stem}_ignore.png"
                (roots["masks"] / mask_id).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask.astype(np.uint8) * 255).save(roots["masks"] / mask_id)
                band = ignore_band(mask).astype(np.uint8) * 255
                Image.fromarray(band).save(roots["masks"] / ignore_id)
                localization.append(f"{image_id},{mask_id},{ignore_id}")
            index += 1
            bar.update()
        meta = roots["metadata"] / split
        meta.mkdir(parents=True, exist_ok=True)
        files = {"image_ids.txt": ids, "class_labels.txt": labels}
        if localization:
            files["localization.txt"] = localization
        for name, rows in files.items():
            (meta / name).write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    bar.close()
    (roots["metadata"] / "class_names.txt").write_text(
        "".join(n + "\n" for n in names), encoding="utf-8"
    )
    (out / "synth.json").write_text(
        json.dumps({**asdict(spec), "layout": "openimages", "val_per_class": val}, indent=2) + "\n",
        encoding="utf-8",
    )
    return roots


def make_synthetic(
    out: str | Path, spec: SynthSpec | None = None, progress: bool = True
) -> DatasetSplit:
    """Write the synthetic data set to ``out`` in the CUB-200-2011 layout and return all records.

    Boxes are written as ``x y w h`` with ``x + w`` the last object column (the inclusive-pixel
    convention of wsolevaluation's +1 IoU).
    """
    spec = spec or SynthSpec()
    if spec.image_format not in ("jpg", "png"):
        raise ValueError("image_format must be jpg or png")
    out = Path(out)
    names = [f"{k + 1:03d}.Synth_{k + 1:03d}" for k in range(spec.classes)]
    records, train_ids = [], set()
    total = spec.train + spec.test
    for index in tqdm(range(total), desc="synth", unit="img", disable=not progress):
        label = index % spec.classes
        image, mask = render_example(index, label, spec)
        rel = f"{names[label]}/Synth_{index:06d}.{spec.image_format}"
        path = out / "images" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        pil = Image.fromarray(image)
        pil.save(path, quality=92) if spec.image_format == "jpg" else pil.save(path)
        seg = out / "segmentations" / Path(rel).with_suffix(".png")
        seg.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask.astype(np.uint8) * 255).save(seg)
        box = tight_box(mask)
        records.append(
            ImageRecord(
                rel,
                path,
                label,
                (image.shape[1], image.shape[0]),
                (tuple(float(v) for v in box),),
                (seg,),
            )
        )
        if index < spec.train:
            train_ids.add(rel)
    split = DatasetSplit("SYNTH", "all", records, names, out)
    write_cub(split, out, train_ids)
    (out / "synth.json").write_text(json.dumps(asdict(spec), indent=2) + "\n", encoding="utf-8")
    return split
