"""From CAMs to boxes, following wsolevaluation (Choe et al., CVPR 2020) exactly.

The protocol, step by step (each step is a function here):

1. :func:`resize_cams`: a CAM is resized to the evaluation size (default 224 x 224) with OpenCV,
   bicubic as the reference ``inference.py`` does (``cv2.resize(cam, size, INTER_CUBIC)``), in
   float64.
2. :func:`normalize_cams`: min-max normalised per image to [0, 1]; a constant CAM becomes all
   zeros (the reference's ``normalize_scoremap``).
3. :func:`threshold_grid`: thresholds ``np.arange(0, 1, interval)``.
4. :func:`boxes_from_scoremap`: at threshold t the map ``(cam * 255).astype(uint8)`` is binarised
   at ``int(t * max)`` (strictly greater), contours are found (``RETR_TREE``), and each contour
   gives the box of its ``boundingRect`` with x1 = x + w, y1 = y + h capped at W - 1, H - 1; with
   no contour the box is [0, 0, 0, 0]; in single-contour mode only the contour of largest
   ``cv2.contourArea`` (the first one on ties) is kept.
5. :func:`box_iou`: IoU with the +1 pixel convention (a box covers x0..x1 inclusive).

GT boxes are scaled from the original image size to the evaluation size by :func:`resize_boxes`
(the reference's ``resize_bbox``: ``int(x * new_w / w)``).

This module is the readable reference path; :mod:`wsol._threshold_sweep` computes the same numbers much
faster and is tested against it.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

EVAL_SIZE = (224, 224)
"""(width, height) CAMs are evaluated at."""

_INTERPOLATION = {
    "cubic": cv2.INTER_CUBIC,
    "linear": cv2.INTER_LINEAR,
    "nearest": cv2.INTER_NEAREST,
    "area": cv2.INTER_AREA,
}


#: CAMs of one shape resized per ``cv2.resize`` call (OpenCV 5's limit on channels)
RESIZE_CHANNELS = 128


class InvalidCAMError(ValueError):
    """A CAM that cannot be evaluated (NaN, inf, wrong shape); the message names the image."""


def threshold_grid(interval: float = 0.001) -> np.ndarray:
    """The CAM thresholds ``np.arange(0, 1, interval)`` (float64), as the reference builds them."""
    if not 0 < interval < 1:
        raise ValueError(f"cam_curve_interval must be in (0, 1), not {interval}")
    return np.arange(0, 1, interval)


def check_cams(
    cams: Sequence[np.ndarray] | np.ndarray, image_ids: Sequence[str], invalid: str = "error"
) -> list[np.ndarray] | np.ndarray:
    """The CAMs, checked: each must be a 2-D array of real numbers. A CAM with NaN or inf
    raises :class:`InvalidCAMError` naming the image (``invalid="error"``), or becomes all zeros
    (``invalid="zero"``: what the reference's ``normalize_scoremap`` does with NaN; it is still
    scored, like a constant CAM)."""
    if invalid not in ("error", "zero"):
        raise ValueError(f"invalid must be 'error' or 'zero', not {invalid!r}")
    if len(cams) != len(image_ids):
        raise ValueError(f"{len(cams)} CAMs for {len(image_ids)} image ids")
    replaced = None
    for k, (cam, image_id) in enumerate(zip(cams, image_ids)):
        cam = np.asarray(cam)
        if cam.ndim != 2 or min(cam.shape) < 1:
            raise InvalidCAMError(
                f"CAM of {image_id} must be a 2-D (H, W) array, not of shape {cam.shape}"
            )
        if not np.issubdtype(cam.dtype, np.number) or np.issubdtype(cam.dtype, np.complexfloating):
            raise InvalidCAMError(
                f"CAM of {image_id} has dtype {cam.dtype}; expected a real number type"
            )
        if not np.isfinite(cam).all():
            if invalid == "zero":
                replaced = replaced if replaced is not None else list(cams)
                replaced[k] = np.zeros(cam.shape)
                continue
            bad = "NaN" if np.isnan(cam).any() else "inf"
            raise InvalidCAMError(
                f"CAM of {image_id} contains {bad} (--invalid-cams zero scores it as all "
                "zeros, as the reference does)"
            )
    return replaced if replaced is not None else cams


def resize_cams(
    cams: Sequence[np.ndarray] | np.ndarray,
    size: tuple[int, int] = EVAL_SIZE,
    interpolation: str = "cubic",
    dtype=np.float64,
) -> np.ndarray:
    """Resize CAMs to ``size`` = (width, height) with OpenCV in ``dtype`` (float64 as the
    reference, or float32 as TS-CAM's ``resize_cam`` on torch's maps): (N, H, W).

    CAMs already of that size are copied unchanged. CAMs of one shape are resized together as
    the channels of one image, which gives the same values as resizing each alone and saves a
    Python-level loop per image; at most ``RESIZE_CHANNELS`` at a time (OpenCV 5 takes 128
    channels per call, 4.x 512).
    """
    w, h = size
    out = np.empty((len(cams), h, w), dtype=dtype)
    flag = _INTERPOLATION[interpolation]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, cam in enumerate(cams):
        groups.setdefault(np.shape(cam), []).append(i)
    for shape, index in groups.items():
        stack = np.stack([np.asarray(cams[i], dtype=dtype) for i in index], axis=-1)
        if shape == (h, w):
            out[index] = np.moveaxis(stack, -1, 0)
            continue
        for start in range(0, len(index), RESIZE_CHANNELS):
            part = stack[..., start : start + RESIZE_CHANNELS]
            resized = cv2.resize(part, (w, h), interpolation=flag)
            if resized.ndim == 2:
                resized = resized[..., None]
            out[index[start : start + RESIZE_CHANNELS]] = np.moveaxis(resized, -1, 0)
    return out


def normalize_cams(cams: np.ndarray) -> np.ndarray:
    """Per-image min-max normalisation to [0, 1] of (N, H, W) float CAMs, in place.

    Same arithmetic as the reference (``cam -= min; cam /= max``; TS-CAM's ``(cam - min) /
    (max - min)`` gives the same values, as ``max(cam - min)`` is ``max - min`` rounded once);
    constant CAMs become zeros.
    """
    lo = cams.min(axis=(1, 2), keepdims=True)
    hi = cams.max(axis=(1, 2), keepdims=True)
    constant = (lo == hi)[:, 0, 0]
    cams -= lo
    scale = cams.max(axis=(1, 2), keepdims=True)
    scale[constant] = 1.0
    cams /= scale
    cams[constant] = 0.0
    return cams


def prepare_scoremaps(
    cams: Sequence[np.ndarray] | np.ndarray,
    image_ids: Sequence[str],
    size: tuple[int, int] = EVAL_SIZE,
    normalize: bool = True,
    interpolation: str = "cubic",
    invalid: str = "error",
    dtype=np.float64,
    map_convention: str = "wsolevaluation",
) -> np.ndarray:
    """Check, resize and normalise raw CAMs into (N, H, W) score maps in [0, 1], float64 (or
    ``dtype``) (``invalid``: what a NaN / inf CAM does, see :func:`check_cams`).

    With ``normalize=False`` the maps must already lie in [0, 1] (the reference's
    ``evaluation.py`` on saved score maps). ``map_convention="sat"``: each CAM is normalised
    at its own resolution first (:func:`sat_normalize`), then resized, as SAT's evaluator does.
    """
    cams = check_cams(cams, image_ids, invalid)
    if map_convention == "sat":
        if not normalize:
            raise ValueError("the sat map convention normalises the CAMs: it needs normalize")
        return resize_cams([sat_normalize(np.asarray(c, dtype=dtype)) for c in cams], size,
                           interpolation, dtype)  # fmt: skip
    if map_convention != "wsolevaluation":
        raise ValueError(f"unknown map convention {map_convention!r}")
    maps = resize_cams(cams, size, interpolation, dtype)
    if normalize:
        return normalize_cams(maps)
    bad = (maps.min(axis=(1, 2)) < 0) | (maps.max(axis=(1, 2)) > 1)
    if bad.any():
        raise InvalidCAMError(
            f"score map of {image_ids[int(np.argmax(bad))]} is outside [0, 1]; normalise it"
        )
    return maps


def sat_normalize(cam: np.ndarray) -> np.ndarray:
    """SAT's ``normalize_map`` (wpy1999/SAT utils/func.py) before its resize: ``(cam - min) /
    (max - min + 1e-5)`` in the CAM's own float type (float32 for its maps: numpy 2's
    arithmetic, the constant taken as float32; numpy 1 added it in float64 before the division,
    which can differ in the last bit of a map's values). A constant CAM becomes all zeros and
    no map reaches 1."""
    cam = np.asarray(cam)
    lo, hi = cam.min(), cam.max()
    return (cam - lo) / (hi - lo + cam.dtype.type(1e-5))


def to_uint8(scoremaps: np.ndarray) -> np.ndarray:
    """``(scoremap * 255).astype(uint8)``: the quantised map thresholds are applied to."""
    return (scoremaps * 255).astype(np.uint8)


def resize_boxes(
    boxes: np.ndarray, image_size: tuple[int, int], size: tuple[int, int] = EVAL_SIZE
) -> np.ndarray:
    """Scale (G, 4) boxes from ``image_size`` = (w, h) to ``size``: ``int(x * new_w / w)``.

    Same float64 arithmetic and truncation as the reference's ``resize_bbox``; (G, 4) int64.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w, h = (float(v) for v in image_size)
    nw, nh = (float(v) for v in size)
    scale = np.array([nw, nh, nw, nh])
    denom = np.array([w, h, w, h])
    return (boxes * scale / denom).astype(np.int64)


def check_boxes(boxes, name: str = "boxes") -> np.ndarray:
    """(N, 4) boxes in the x0 y0 x1 y1 convention, or ValueError: the reference's
    ``check_box_convention`` (non-negative coordinates, x1 >= x0, y1 >= y0, four per box)."""
    arr = np.asarray(boxes)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape (4,) or (N, 4), not {np.shape(boxes)}")
    if not np.isfinite(arr.astype(np.float64)).all():
        raise ValueError(f"{name} must be finite numbers")
    if (arr < 0).any():
        raise ValueError(f"{name}: coordinates must be non-negative")
    if (arr[:, 2] < arr[:, 0]).any() or (arr[:, 3] < arr[:, 1]).any():
        bad = arr[(arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1])][0].tolist()
        raise ValueError(f"{name}: {bad} does not follow x0 y0 x1 y1 (x1 < x0 or y1 < y0)")
    return arr


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of (A, 4) against (B, 4) integer boxes (x0, y0, x1, y1), +1 pixel convention: (A, B).

    Boxes that break the x0 y0 x1 y1 convention raise ValueError, as the reference's
    ``calculate_multiple_iou`` does; degenerate pairs (union <= 0) have IoU 0.
    """
    a = check_boxes(boxes_a, "boxes_a").astype(np.int64).reshape(-1, 1, 4)
    b = check_boxes(boxes_b, "boxes_b").astype(np.int64).reshape(1, -1, 4)
    iw = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    ih = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    union = area_a + area_b - inter
    degenerate = union <= 0
    iou = inter / np.where(degenerate, 1, union)
    iou[degenerate] = 0.0
    return iou


def tscam_gt_boxes(
    boxes: np.ndarray, image_size: tuple[int, int], size: tuple[int, int] = EVAL_SIZE
) -> np.ndarray:
    """GT boxes as TS-CAM's test loader makes them (vasgaowei/TS-CAM lib/datasets/imagenet.py,
    ``__getitem__``): ``x / W * w`` (divided first), x0 and y0 raised to 0, x1 and y1 lowered
    to ``w - 1`` / ``h - 1``, then truncated to int; (G, 4) int64.

    Its CUB loader (lib/datasets/cub.py) truncates the file's x, y, width and height first; for
    integer-valued boxes, as all of CUB-200-2011's are, both give these.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w, h = (int(v) for v in image_size)
    nw, nh = (int(v) for v in size)
    x0 = np.maximum(b[:, 0] / w * nw, 0)
    y0 = np.maximum(b[:, 1] / h * nh, 0)
    x1 = np.minimum(b[:, 2] / w * nw, nw - 1)
    y1 = np.minimum(b[:, 3] / h * nh, nh - 1)
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)


def tscam_box(quantised: np.ndarray, threshold: float) -> np.ndarray:
    """The one box TS-CAM's ``get_bboxes`` (lib/cams_deit.py) finds in a (H, W) uint8 map
    (``(cam * 255).astype(uint8)``): the pixels above ``int(threshold * max)`` (THRESH_TOZERO),
    the largest contour of RETR_TREE, its ``boundingRect`` as ``[x, y, x + w, y + h]`` (not
    capped at the image's last pixel, unlike wsolevaluation), and ``[0, 0, 1, 1]`` when no pixel
    is left."""
    _, kept = cv2.threshold(quantised, int(threshold * np.max(quantised)), 255, cv2.THRESH_TOZERO)
    contours = cv2.findContours(kept, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if len(contours) == 0:
        return np.array([0, 0, 1, 1], dtype=np.int64)
    x, y, w, h = cv2.boundingRect(max(contours, key=cv2.contourArea))
    return np.array([x, y, x + w, y + h], dtype=np.int64)


def tscam_iou(box: np.ndarray, gt_boxes: np.ndarray) -> float:
    """The best IoU of ``box`` with any GT box as TS-CAM's ``cal_iou`` (lib/cams_deit.py): +1
    pixel areas, intersections below 0 as 0, and 0 when no GT box overlaps (the loop's start)."""
    a = np.asarray(box, dtype=np.float64).reshape(1, 4)
    b = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + 1
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + 1
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (area_a + area_b - inter)
    best = 0.0
    for value in iou:  # the reference's loop: only a larger value replaces (never a NaN)
        if value > best:
            best = float(value)
    return best


def sat_gt_boxes(
    boxes: np.ndarray, image_size: tuple[int, int], center_crop: tuple[int, int]
) -> np.ndarray:
    """GT boxes in the centre crop as SAT's test loaders put them (wpy1999/SAT
    DataLoader/CUB_200_2011.py and ILSVRC.py, ``load_test_bbox``): with ``center_crop`` =
    (resize R, crop C) and shift ``(R - C) // 2``, ``x / W * R - shift`` (divided first),
    x0 and y0 raised to 0, x1 and y1 lowered to ``C - 1``, then truncated towards zero; (G, 4)
    int64.

    A box wholly outside the crop comes out crossed (x1 < x0 or y1 < y0), as there; SAT's IoU
    (:func:`sat_iou`) then gives it 0. Its ILSVRC loader computes in float32, its CUB loader in
    float64: for whole-pixel boxes (all of CUB's and ILSVRC's) both give these, as a result
    that is a whole number is exact in either and a fractional one lies at least 1 / W from
    the next whole number.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w, h = (int(v) for v in image_size)
    resize, crop = (int(v) for v in center_crop)
    shift = (resize - crop) // 2
    x0 = np.maximum(b[:, 0] / w * resize - shift, 0)
    y0 = np.maximum(b[:, 1] / h * resize - shift, 0)
    x1 = np.minimum(b[:, 2] / w * resize - shift, crop - 1)
    y1 = np.minimum(b[:, 3] / h * resize - shift, crop - 1)
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)


def crop_gt_boxes(
    boxes: np.ndarray, image_size: tuple[int, int], center_crop: tuple[int, int]
) -> np.ndarray:
    """The GT boxes the threshold sweep scores a centre-cropped image against: those of
    :func:`sat_gt_boxes` that lie (partly) inside the crop. An image whose every box lies
    outside it gets the one box ``[C, C, C, C]`` just past the crop's corner, which no box of
    the sweep (all within ``[0, C - 1]``) overlaps: a miss at every threshold, IoU 0."""
    b = sat_gt_boxes(boxes, image_size, center_crop)
    b = b[(b[:, 2] >= b[:, 0]) & (b[:, 3] >= b[:, 1])]
    if len(b) == 0:
        crop = int(center_crop[1])
        return np.array([[crop, crop, crop, crop]], dtype=np.int64)
    return b


def sat_box(scoremap: np.ndarray, threshold: float) -> np.ndarray:
    """The one box SAT's evaluator (wpy1999/SAT evaluator.py, ``val_loc_one_epoch``) finds in
    a (H, W) score map: the pixels ``> threshold`` (compared in the map's own float type), the
    largest 8-connected component (``skimage.measure.label``; on ties the one met first in
    row-major order, as its ``count_max`` sorts stably), and that component's
    ``regionprops`` bbox as ``[min_col, min_row, max_col, max_row]``, whose far edges are one
    past the last pixel; ``[0, 0, W, H]`` when no pixel is above the threshold."""
    from skimage.measure import label

    height, width = scoremap.shape
    components = label(scoremap > scoremap.dtype.type(threshold), connectivity=2)
    counts = np.bincount(components.ravel())
    if len(counts) < 2:
        return np.array([0, 0, width, height], dtype=np.int64)
    rows, cols = np.nonzero(components == int(np.argmax(counts[1:])) + 1)
    return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=np.int64)


def sat_iou(box: np.ndarray, gt_boxes: np.ndarray) -> float:
    """The best IoU of ``box`` with any GT box as SAT's evaluator takes it (utils/accuracy.py
    ``IoU``: +1 pixel areas, the intersection's sides raised to 0; the loop keeps a larger
    value, starting from -1). A crossed GT box (wholly outside the crop, see
    :func:`sat_gt_boxes`) has no intersection, so its IoU is 0; where its negative area would
    make the union 0 (SAT divides by zero there) it is 0 too."""
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box).reshape(4))
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    best = -1.0
    for g0, h0, g1, h1 in np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4):
        inter = max(0.0, min(x1, g1) - max(x0, g0) + 1) * max(0.0, min(y1, h1) - max(y0, h0) + 1)
        union = area + (g1 - g0 + 1) * (h1 - h0 + 1) - inter
        iou = inter / union if union != 0 else 0.0
        if iou > best:
            best = iou
    return best


def boxes_from_scoremap(
    scoremap: np.ndarray, thresholds: Sequence[float] | np.ndarray, multi_contour: bool = False
) -> list[np.ndarray]:
    """Boxes at each threshold from one (H, W) score map in [0, 1]: one (K, 4) int array each.

    The straightforward per-threshold implementation of the reference (threshold, contours,
    boundingRect), kept as the readable definition; see :func:`wsol._threshold_sweep.threshold_ious` for the
    fast one.
    """
    height, width = scoremap.shape
    image = (scoremap * 255).astype(np.uint8)
    peak = np.max(image)
    out = []
    for t in thresholds:
        _, binary = cv2.threshold(image, int(t * peak), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
        if len(contours) == 0:
            out.append(np.zeros((1, 4), dtype=np.int64))
            continue
        if not multi_contour:
            contours = [max(contours, key=cv2.contourArea)]
        boxes = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
        out.append(np.asarray(boxes, dtype=np.int64))
    return out


def box_to_image(
    box,
    eval_size: tuple[int, int],
    image_size: tuple[int, int],
    center_crop: tuple[int, int] | None = None,
) -> tuple[int, ...]:
    """An inclusive (x0, y0, x1, y1) box on the evaluation grid (``eval_size`` = (w, h), e.g.
    224 x 224) in the original image's pixels (``image_size`` = (W, H)), inclusive too: grid
    pixel x covers image columns [x W / w, (x + 1) W / w), so x0 -> floor(x0 W / w) and x1 ->
    ceil((x1 + 1) W / w) - 1, clipped to the image. With ``center_crop`` = (R, C) the grid is
    the crop of the R x R resized image (``eval_size`` (C, C)): its pixel x is column
    x + (R - C) // 2 of an R-wide grid."""
    import math

    (w, h), (W, H) = eval_size, image_size
    x0, y0, x1, y1 = (int(v) for v in box)
    if center_crop is not None:
        resize, crop = (int(v) for v in center_crop)
        shift = (resize - crop) // 2
        x0, y0, x1, y1 = x0 + shift, y0 + shift, x1 + shift, y1 + shift
        w = h = resize
    return (
        max(0, min(W - 1, math.floor(x0 * W / w))),
        max(0, min(H - 1, math.floor(y0 * H / h))),
        max(0, min(W - 1, math.ceil((x1 + 1) * W / w) - 1)),
        max(0, min(H - 1, math.ceil((y1 + 1) * H / h) - 1)),
    )


def threshold_ious_reference(
    scoremap: np.ndarray, gt_boxes: np.ndarray, thresholds: np.ndarray, multi_contour: bool = False
) -> np.ndarray:
    """Best IoU against the GT boxes at each threshold (T,), by the straightforward path."""
    per_threshold = boxes_from_scoremap(scoremap, thresholds, multi_contour)
    return np.array([box_iou(boxes, gt_boxes).max() for boxes in per_threshold])
