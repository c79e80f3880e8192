"""WSOL metrics as streaming accumulators: MaxBoxAcc, MaxBoxAccV2, GT-known / top-1 / top-5
localization, classification accuracy and PxAP.

Definitions (Choe et al., CVPR 2020; clovaai/wsolevaluation), all in percent:

* For each image and CAM threshold t, the best IoU between its predicted box(es) at t and its GT
  boxes (see :mod:`wsol.localize`). An image is *correct* at (t, d) if that IoU >= d / 100.
* ``MaxBoxAcc(d)`` = max over t of the percentage of correct images. ``MaxBoxAcc`` without a
  level means d = 50 with the single largest contour (the original metric); ``MaxBoxAccV2`` is the
  mean of MaxBoxAcc(d) over d in {30, 50, 70} with all contours.
* GT-known loc at t: correct at (t, 50) using the CAM of the ground-truth class. Top-1 (top-5)
  loc at t: GT-known correct and the GT class is the top-1 prediction (among the top 5).
  Reported at a fixed threshold (chosen on a validation split) and at the best threshold, the
  one that maximises GT-known loc.
* PxAP: area under the pixel precision-recall curve of the score maps against the GT masks
  (union of instance masks; ignore regions left out), from score histograms over the thresholds
  plus [1, 2, 3] as bin edges, exactly as the reference's ``MaskEvaluator``.

Accumulators keep only counts and histograms, so memory does not grow with the number of
images, and :meth:`merge` / :meth:`all_reduce` combine them across processes (DDP evaluation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from . import _threshold_sweep
from .data.records import DatasetSplit
from .localize import (
    EVAL_SIZE,
    check_boxes,
    crop_gt_boxes,
    prepare_scoremaps,
    resize_boxes,
    sat_box,
    sat_gt_boxes,
    sat_iou,
    threshold_grid,
    threshold_ious_reference,
    to_uint8,
    tscam_box,
    tscam_gt_boxes,
    tscam_iou,
)

CONTOUR_MODES = ("single", "multi")
#: how the ``@fixed`` loc metrics score an image (see :class:`Protocol`)
LOC_CONVENTIONS = ("wsolevaluation", "tscam", "sat")
#: how raw CAMs become score maps (see :class:`Protocol`)
MAP_CONVENTIONS = ("wsolevaluation", "sat")
PRECISIONS = {"float64": np.float64, "float32": np.float32}
#: Protocol fields added after results and folder names first recorded protocols, with the
#: value every earlier result had (reports and folder names read a missing one as this)
ADDED_PROTOCOL_FIELDS = {
    "precision": "float64",
    "loc_convention": "wsolevaluation",
    "map_convention": "wsolevaluation",
    "center_crop": None,
    "ten_crop": False,
}


@dataclass(frozen=True)
class Protocol:
    """The protocol choices, all explicit (defaults: wsolevaluation's).

    Attributes:
        cam_curve_interval: spacing of the threshold grid ``np.arange(0, 1, interval)``.
        iou_thresholds: IoU levels d (percent) for MaxBoxAcc(d); MaxBoxAccV2 averages them.
        eval_size: (width, height) CAMs and GT are brought to.
        interpolation: OpenCV interpolation used to resize CAMs (reference: ``cubic``).
        normalize: min-max normalise each CAM (else maps must already lie in [0, 1]).
        multi_contour: contour mode of the per-IoU table and of the loc metrics.
        fixed_threshold: the CAM threshold of the ``@fixed`` loc metrics when the evaluation is
            given none (None: only a val-chosen one, if any, is reported).
        invalid_cams: a CAM with NaN or inf is an ``error`` (naming the image), or scored as
            all ``zero`` (the reference's behaviour for NaN CAMs).
        name: the protocol's name, recorded with every result (``PROTOCOLS`` holds the named
            ones).
        headline: the metric the protocol's comparisons report (``wsol compare``'s sentences
            and ``differences.csv``): ``MaxBoxAccV2`` for wsolevaluation (PxAP where there are
            only masks), ``top1_loc@fixed`` for cutmix2019 (the paper's Table 9).
        precision: the float type CAMs are resized and normalised in: ``float64`` as
            wsolevaluation, ``float32`` as TS-CAM (its maps are torch's float32).
        loc_convention: how the ``@fixed`` loc metrics score an image. ``wsolevaluation``: the
            threshold sweep's box at the grid threshold nearest the fixed one, IoU >= 0.5 for
            all three. ``tscam``: TS-CAM's ``evaluate_cls_loc`` (lib/cams_deit.py) at exactly
            the fixed threshold: GT boxes as its loader clips and truncates them
            (:func:`wsol.localize.tscam_gt_boxes`), its box (:func:`wsol.localize.tscam_box`),
            GT-known at IoU >= 0.5 but top-1 and top-5 loc at IoU > 0.5, as its code compares.
            ``sat``: SAT's evaluator (wpy1999/SAT evaluator.py) at exactly the fixed
            threshold: GT boxes as its loaders move them into the crop
            (:func:`wsol.localize.sat_gt_boxes`), its box (:func:`wsol.localize.sat_box`) and
            IoU (:func:`wsol.localize.sat_iou`), GT-known, top-1 and top-5 loc all at IoU
            >= 0.5. The threshold sweep (MaxBoxAcc, MaxBoxAccV2) stays wsolevaluation's either
            way.
        map_convention: how a raw CAM becomes a score map. ``wsolevaluation``: resized, then
            min-max normalised. ``sat``: min-max normalised at its own resolution with
            ``max - min + 1e-5`` as the divisor, then resized (SAT utils/func.py
            ``normalize_map``; :func:`wsol.localize.sat_normalize`).
        center_crop: ``(R, C)``: each test image is resized to R x R and centre-cropped to
            C x C, as SAT's test loaders do (256, 224), and every GT box is moved into the crop
            (:func:`wsol.localize.sat_gt_boxes`; the sweep leaves out boxes wholly outside it,
            :func:`wsol.localize.crop_gt_boxes`). ``eval_size`` must then be (C, C): SAT
            resizes its maps to the crop and measures in its pixels. None (wsolevaluation's
            and TS-CAM's): resized straight to the model's input, no crop.
        ten_crop: classify each image by the mean softmax over the ten C x C crops of the
            R x R image (torchvision's ``TenCrop``: four corners and the centre, and the same of
            the flipped image), as SAT's CUB evaluator does (evaluator.py ``--tencrop``); the
            CAM still comes from the centre crop. Needs ``center_crop``.
    """

    cam_curve_interval: float = 0.001
    iou_thresholds: tuple[int, ...] = (30, 50, 70)
    eval_size: tuple[int, int] = EVAL_SIZE
    interpolation: str = "cubic"
    normalize: bool = True
    multi_contour: bool = False
    fixed_threshold: float | None = None
    invalid_cams: str = "error"
    name: str = "wsolevaluation"
    headline: str = "MaxBoxAccV2"
    precision: str = "float64"
    loc_convention: str = "wsolevaluation"
    map_convention: str = "wsolevaluation"
    center_crop: tuple[int, int] | None = None
    ten_crop: bool = False

    def __post_init__(self):
        object.__setattr__(self, "iou_thresholds", tuple(int(d) for d in self.iou_thresholds))
        object.__setattr__(self, "eval_size", tuple(int(v) for v in self.eval_size))
        if self.center_crop is not None:
            object.__setattr__(self, "center_crop", tuple(int(v) for v in self.center_crop))
        if 50 not in self.iou_thresholds:
            raise ValueError(
                "iou_thresholds must include 50 (MaxBoxAcc and the loc metrics use it)"
            )
        if self.invalid_cams not in ("error", "zero"):
            raise ValueError(f"invalid_cams must be 'error' or 'zero', not {self.invalid_cams!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}"
            )
        if self.loc_convention not in LOC_CONVENTIONS:
            raise ValueError(
                f"loc_convention must be one of {', '.join(LOC_CONVENTIONS)}, "
                f"not {self.loc_convention!r}"
            )
        if self.loc_convention != "wsolevaluation" and self.fixed_threshold is None:
            raise ValueError(
                f"the {self.loc_convention} loc convention scores at a fixed threshold: give one"
            )
        if self.map_convention not in MAP_CONVENTIONS:
            raise ValueError(
                f"map_convention must be one of {', '.join(MAP_CONVENTIONS)}, "
                f"not {self.map_convention!r}"
            )
        if self.map_convention == "sat" and not self.normalize:
            raise ValueError("the sat map convention normalises the CAMs: it needs normalize")
        if self.center_crop is not None:
            if len(self.center_crop) != 2:
                raise ValueError(f"center_crop is (resize, crop), not {self.center_crop}")
            resize, crop = self.center_crop
            if not 1 <= crop <= resize:
                raise ValueError(f"center_crop {self.center_crop}: need 1 <= crop <= resize")
            if (resize - crop) % 2:
                raise ValueError(
                    f"center_crop {self.center_crop}: resize - crop must be even (SAT moves the "
                    "GT boxes by (resize - crop) // 2; torchvision crops at round((resize - "
                    "crop) / 2), the same for every even difference but not every odd one)"
                )
            if self.eval_size != (crop, crop):
                raise ValueError(
                    f"center_crop {self.center_crop} evaluates in the crop's pixels: eval_size "
                    f"must be ({crop}, {crop}), not {self.eval_size}"
                )
        if self.ten_crop and self.center_crop is None:
            raise ValueError("ten_crop takes its crops of the resized image: it needs center_crop")
        if any(not 0 < d <= 100 for d in self.iou_thresholds):
            raise ValueError(
                f"IoU thresholds are percentages in (0, 100], not {self.iou_thresholds}"
            )

    def scoremaps(self, cams, image_ids: Sequence[str], invalid: str | None = None) -> np.ndarray:
        """Raw CAMs as this protocol's (N, H, W) score maps (:func:`wsol.localize.prepare_scoremaps`
        with its size, normalisation, interpolation, precision and map convention);
        ``invalid``: what a NaN / inf CAM does, default the protocol's ``invalid_cams``."""
        return prepare_scoremaps(
            cams,
            image_ids,
            self.eval_size,
            self.normalize,
            self.interpolation,
            invalid or self.invalid_cams,
            PRECISIONS[self.precision],
            self.map_convention,
        )

    @property
    def thresholds(self) -> np.ndarray:
        return threshold_grid(self.cam_curve_interval)

    @property
    def mode(self) -> str:
        return "multi" if self.multi_contour else "single"

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["fixed_threshold"] is None:
            del d["fixed_threshold"]
        d["iou_thresholds"] = list(self.iou_thresholds)
        d["eval_size"] = list(self.eval_size)
        for k in ("map_convention", "center_crop", "ten_crop"):  # recorded where they matter,
            if d[k] == ADDED_PROTOCOL_FIELDS[k]:  # so earlier records and keys stay the same
                del d[k]
        if self.center_crop is not None:
            d["center_crop"] = list(self.center_crop)
        d["resize"] = f"cv2.resize {self.interpolation}, {self.precision}"
        d["iou_convention"] = "+1 pixel (inclusive x1, y1)"
        d["binarisation"] = "uint8 map > int(t * max), cv2.THRESH_BINARY"
        d["contours"] = "cv2.findContours RETR_TREE; box = boundingRect, x1/y1 capped at W-1/H-1"
        if self.loc_convention == "tscam":
            d["loc_fixed"] = (
                "TS-CAM lib/cams_deit.py at the fixed threshold: GT x / W * 224 clipped to "
                "[0, 223] and truncated; box [x, y, x + w, y + h] of the largest RETR_TREE "
                "contour of uint8 map > int(t * max) (none: [0, 0, 1, 1]); GT-known IoU >= 0.5, "
                "top-1 / top-5 IoU > 0.5"
            )
        if self.loc_convention == "sat":
            d["loc_fixed"] = (
                "SAT evaluator.py at the fixed threshold: GT (x / W * R - (R - C) // 2) clipped "
                "to [0, C - 1] and truncated; box of the largest 8-connected component of "
                "map > t (skimage label, regionprops bbox, far edges exclusive; none: "
                "[0, 0, C, C]); GT-known, top-1 and top-5 loc at IoU >= 0.5"
            )
        if self.map_convention == "sat":
            d["resize"] = (
                f"(cam - min) / (max - min + 1e-5) at the CAM's resolution, then cv2.resize "
                f"{self.interpolation}, {self.precision}"
            )
        return d


#: The named evaluation protocols (``wsol evaluate --protocol NAME``).
#:
#: * ``wsolevaluation``: Choe et al., CVPR 2020 (clovaai/wsolevaluation): threshold sweep,
#:   MaxBoxAcc / MaxBoxAccV2 / PxAP; loc metrics at the best threshold, or at one chosen on val.
#: * ``cutmix2019``: the CutMix paper's Table 9 protocol (Yun et al., ICCV 2019, Appendix B):
#:   the min-max normalised CAM thresholded at 0.15 (of its maximum), the box around the
#:   largest connected component (single contour), top-1 / GT-known loc at IoU 0.5.
#: * ``tscam_cub`` / ``tscam_ilsvrc``: TS-CAM's own evaluation (Gao et al., ICCV 2021;
#:   vasgaowei/TS-CAM tools_cam/test_cam.py with lib/cams_deit.py): the CAM resized linearly in
#:   float32 to 224 x 224 and min-max normalised, thresholded at the paper configs' CAM_THR
#:   (configs/CUB/*.yaml 0.1, configs/ILSVRC/*.yaml 0.12), scored by its ``evaluate_cls_loc``
#:   (``loc_convention="tscam"``). Its images are resized to 224 x 224 without a crop, as
#:   wsolevaluation's.
#: * ``sat_cub`` / ``sat_ilsvrc``: SAT's own evaluation (Wu et al., ICCV 2023; wpy1999/SAT
#:   evaluator.py and evaluator_ImageNet.py with DataLoader/*.py and utils/func.py): the test
#:   image resized to 256 x 256 and centre-cropped to 224, the map normalised at 14 x 14
#:   (``+ 1e-5``) then resized linearly in float32 to 224, thresholded at the evaluators'
#:   default ``--threshold`` (evaluator.py 0.4, evaluator_ImageNet.py 0.3), scored by SAT's
#:   box and IoU (``loc_convention="sat"``). The CUB evaluator classifies by ten crops
#:   (``--tencrop`` defaults to True there, False in the ImageNet one). ``wsol evaluate RUN``
#:   takes the crop from the run's ``data.resize_size`` / ``data.crop_size`` (SAT's own code
#:   uses the same two arguments for training and test; its recipes 256 and 224).
PROTOCOLS: dict[str, Protocol] = {
    "wsolevaluation": Protocol(),
    "cutmix2019": Protocol(
        name="cutmix2019", multi_contour=False, fixed_threshold=0.15, headline="top1_loc@fixed"
    ),
    **{
        f"tscam_{dataset}": Protocol(
            name=f"tscam_{dataset}",
            multi_contour=False,
            fixed_threshold=threshold,
            headline="top1_loc@fixed",
            interpolation="linear",
            precision="float32",
            loc_convention="tscam",
        )
        for dataset, threshold in (("cub", 0.1), ("ilsvrc", 0.12))
    },
    **{
        f"sat_{dataset}": Protocol(
            name=f"sat_{dataset}",
            multi_contour=False,
            fixed_threshold=threshold,
            headline="top1_loc@fixed",
            interpolation="linear",
            precision="float32",
            loc_convention="sat",
            map_convention="sat",
            center_crop=(256, 224),
            ten_crop=ten_crop,
        )
        for dataset, threshold, ten_crop in (("cub", 0.4, True), ("ilsvrc", 0.3, False))
    },
}


def fit_center_crop(protocol: Protocol, resize_size: int, crop_size: int) -> Protocol:
    """``protocol`` with its centre crop (if it has one) taken from a run's
    ``data.resize_size`` and ``data.crop_size``, and ``eval_size`` the crop's: SAT's evaluator
    crops as its training did. Unchanged where it has no crop or the same one."""
    import dataclasses

    crop = (int(resize_size), int(crop_size))
    if protocol.center_crop is None or protocol.center_crop == crop:
        return protocol
    return dataclasses.replace(protocol, center_crop=crop, eval_size=(crop[1], crop[1]))


def named_protocol(name: str, **changes) -> Protocol:
    """A protocol of :data:`PROTOCOLS` with ``changes`` (e.g. ``cam_curve_interval``) applied."""
    import dataclasses

    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    return dataclasses.replace(PROTOCOLS[name], **changes)


@dataclass
class GroundTruth:
    """GT of one image: boxes (G, 4) in original pixels and the original (width, height)."""

    boxes: np.ndarray
    size: tuple[int, int]
    label: int = -1
    mask_paths: tuple[Path, ...] = ()
    ignore_path: Path | None = None


def ground_truth(split: DatasetSplit) -> dict[str, GroundTruth]:
    """{image_id: GroundTruth} from a data set split."""
    out = {}
    for r in split.records:
        boxes = np.asarray(r.boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes):
            check_boxes(boxes, f"GT boxes of {r.image_id}")
        out[r.image_id] = GroundTruth(boxes, r.size, r.label, tuple(r.mask_paths), r.ignore_path)
    return out


def gt_fingerprint(split: DatasetSplit) -> str:
    """A short hash of what a split's results are scored against: every image id with its
    label, size, boxes and number of masks (not where the files lie, so copies of one data set on
    two machines agree). ``wsol compare`` pairs and pools only evaluations that agree on it."""
    import hashlib

    digest = hashlib.sha256()
    for r in sorted(split.records, key=lambda r: r.image_id):
        boxes = ";".join(",".join(f"{v:g}" for v in b) for b in r.boxes)
        size = "x".join(str(v) for v in r.size) if r.size else ""
        digest.update(f"{r.image_id}|{r.label}|{size}|{boxes}|{len(r.mask_paths)}\n".encode())
    return digest.hexdigest()[:16]


def _best_index(curve: np.ndarray) -> int:
    return int(np.argmax(curve))  # the first maximum, as ndarray.max() picks the value


@dataclass
class BoxAccumulator:
    """Streaming box metrics for both contour modes.

    Example:
        >>> acc = BoxAccumulator(gt, Protocol(cam_curve_interval=0.01))  # doctest: +SKIP
        >>> acc.update(scoremaps, image_ids, top1_correct=top1, top5_correct=top5)
        >>> acc.compute()["MaxBoxAccV2"]
    """

    gt: Mapping[str, GroundTruth]
    protocol: Protocol = field(default_factory=Protocol)
    engine: str = "fast"  # or "reference": the straightforward per-threshold path

    def __post_init__(self):
        if self.engine not in ("fast", "reference"):
            raise ValueError("engine must be 'fast' or 'reference'")
        shape = (len(self.protocol.iou_thresholds), len(self.protocol.thresholds))
        self.correct = {m: np.zeros(shape, dtype=np.int64) for m in CONTOUR_MODES}
        self.correct_top1 = {m: np.zeros(shape, dtype=np.int64) for m in CONTOUR_MODES}
        self.correct_top5 = {m: np.zeros(shape, dtype=np.int64) for m in CONTOUR_MODES}
        self.count = 0
        self.count_with_class = 0
        self.class_top1 = 0
        self.class_top5 = 0
        # images correct at the fixed threshold under a paper's own loc convention (tscam,
        # sat): GT-known, top-1, top-5 (unused by wsolevaluation's, whose @fixed reads the sweep)
        self.fixed_correct = np.zeros(3, dtype=np.int64)

    def _gt_boxes(self, image_id: str) -> np.ndarray:
        try:
            g = self.gt[image_id]
        except KeyError:
            raise KeyError(f"image id {image_id} is not in the ground truth") from None
        if len(g.boxes) == 0:
            raise ValueError(f"image {image_id} has no GT box")
        if g.size is None:
            raise ValueError(f"image {image_id} has no size in the metadata (image_sizes.txt)")
        if self.protocol.center_crop is not None:
            return crop_gt_boxes(g.boxes, g.size, self.protocol.center_crop)
        return resize_boxes(g.boxes, g.size, self.protocol.eval_size)

    def update(
        self,
        scoremaps: np.ndarray,
        image_ids: Sequence[str],
        top1_correct: Sequence[bool] | None = None,
        top5_correct: Sequence[bool] | None = None,
    ) -> dict[str, np.ndarray]:
        """Add prepared score maps (N, H, W) float64 in [0, 1] (see ``prepare_scoremaps``).

        Returns each contour mode's (N, T) best IoU per threshold, for per-image records.
        """
        gts = [self._gt_boxes(i) for i in image_ids]
        thresholds = self.protocol.thresholds
        levels = np.asarray(self.protocol.iou_thresholds, dtype=np.float64)[:, None, None] / 100
        curves = {}
        quantised = to_uint8(scoremaps) if self.engine == "fast" else None
        for mode in CONTOUR_MODES:
            multi = mode == "multi"
            if self.engine == "fast":
                ious = _threshold_sweep.threshold_ious(quantised, gts, thresholds, multi)
            else:
                ious = np.stack(
                    [
                        threshold_ious_reference(s, g, thresholds, multi)
                        for s, g in zip(scoremaps, gts)
                    ]
                )
            curves[mode] = ious
            hit = ious[None] >= levels  # (D, N, T)
            self.correct[mode] += hit.sum(axis=1)
            if top1_correct is not None:
                self.correct_top1[mode] += (
                    hit & np.asarray(top1_correct, bool)[None, :, None]
                ).sum(axis=1)
            if top5_correct is not None:
                self.correct_top5[mode] += (
                    hit & np.asarray(top5_correct, bool)[None, :, None]
                ).sum(axis=1)
        if self.protocol.loc_convention == "tscam":
            curves["fixed"] = self._tscam_update(
                quantised if quantised is not None else to_uint8(scoremaps),
                image_ids,
                top1_correct,
                top5_correct,
            )
        elif self.protocol.loc_convention == "sat":
            curves["fixed"] = self._sat_update(scoremaps, image_ids, top1_correct, top5_correct)
        self.count += len(image_ids)
        if top1_correct is not None:
            self.count_with_class += len(image_ids)
            self.class_top1 += int(np.sum(top1_correct))
            self.class_top5 += int(np.sum(top5_correct)) if top5_correct is not None else 0
        return curves

    def _tscam_update(self, quantised, image_ids, top1_correct, top5_correct) -> np.ndarray:
        """Each image's IoU at the fixed threshold as TS-CAM scores it; counts the hits."""
        p = self.protocol
        ious = np.array(
            [
                tscam_iou(
                    tscam_box(q, p.fixed_threshold),
                    tscam_gt_boxes(self.gt[i].boxes, self.gt[i].size, p.eval_size),
                )
                for q, i in zip(quantised, image_ids)
            ],
            dtype=np.float64,
        )
        self.fixed_correct[0] += int((ious >= 0.5).sum())  # gt_known: `if iou >= 0.5`
        above = ious > 0.5  # cls_loc_err: `max_iou > iou_th`
        if top1_correct is not None:
            self.fixed_correct[1] += int((above & np.asarray(top1_correct, bool)).sum())
        if top5_correct is not None:
            self.fixed_correct[2] += int((above & np.asarray(top5_correct, bool)).sum())
        return ious

    def _sat_update(self, scoremaps, image_ids, top1_correct, top5_correct) -> np.ndarray:
        """Each image's IoU at the fixed threshold as SAT's evaluator scores it (its box on the
        float map, its GT in the crop); counts the hits, all three at IoU >= 0.5."""
        p = self.protocol

        def gt(image_id):
            g = self.gt[image_id]
            if p.center_crop is None:  # no crop: the boxes as wsolevaluation resizes them
                return resize_boxes(g.boxes, g.size, p.eval_size)
            return sat_gt_boxes(g.boxes, g.size, p.center_crop)

        ious = np.array(
            [sat_iou(sat_box(m, p.fixed_threshold), gt(i)) for m, i in zip(scoremaps, image_ids)],
            dtype=np.float64,
        )
        hit = ious >= 0.5  # `max_iou >= 0.5` for gt_loc, cls_loc and cls_loc_5 alike
        self.fixed_correct[0] += int(hit.sum())
        if top1_correct is not None:
            self.fixed_correct[1] += int((hit & np.asarray(top1_correct, bool)).sum())
        if top5_correct is not None:
            self.fixed_correct[2] += int((hit & np.asarray(top5_correct, bool)).sum())
        return ious

    # -- combining ---------------------------------------------------------------------------
    def _arrays(self) -> list[np.ndarray]:
        return [
            *(
                d[m]
                for d in (self.correct, self.correct_top1, self.correct_top5)
                for m in CONTOUR_MODES
            ),
            self.fixed_correct,
        ]

    def _scalars(self) -> np.ndarray:
        return np.array(
            [self.count, self.count_with_class, self.class_top1, self.class_top5], dtype=np.int64
        )

    def _set_scalars(self, values) -> None:
        self.count, self.count_with_class, self.class_top1, self.class_top5 = (
            int(v) for v in values
        )

    def merge(self, other: BoxAccumulator) -> BoxAccumulator:
        """Add another accumulator's counts (same protocol) into this one."""
        if other.protocol != self.protocol:
            raise ValueError("cannot merge accumulators with different protocols")
        for mine, theirs in zip(self._arrays(), other._arrays()):
            mine += theirs
        self._set_scalars(self._scalars() + other._scalars())
        return self

    def all_reduce(self) -> None:
        """Sum the counts over all processes of the default torch.distributed group."""
        _all_reduce_arrays([*self._arrays(), self._scalars()], self._set_scalars)

    # -- results -----------------------------------------------------------------------------
    def compute(self, fixed_threshold: float | None = None) -> dict:
        """Every box metric, the best thresholds and the per-threshold curves (percent)."""
        if self.count == 0:
            raise RuntimeError("no image was accumulated")
        p = self.protocol
        thresholds = p.thresholds
        out: dict = {"images": self.count, "box": {}, "curves": {"thresholds": thresholds.tolist()}}
        for mode in CONTOUR_MODES:
            acc = self.correct[mode] * 100.0 / float(self.count)
            out["curves"][mode] = {str(d): acc[i].tolist() for i, d in enumerate(p.iou_thresholds)}
            out["box"][mode] = {
                str(d): {
                    "max_box_acc": float(acc[i].max()),
                    "best_threshold": float(thresholds[_best_index(acc[i])]),
                }
                for i, d in enumerate(p.iou_thresholds)
            }
        i50 = p.iou_thresholds.index(50)
        out["MaxBoxAcc"] = out["box"]["single"]["50"]["max_box_acc"]
        out["MaxBoxAccV2"] = float(
            np.mean([out["box"]["multi"][str(d)]["max_box_acc"] for d in p.iou_thresholds])
        )
        mode = p.mode
        gt_known = self.correct[mode][i50] * 100.0 / self.count
        best = _best_index(gt_known)
        loc: dict = {"contour_mode": mode, "best_threshold": float(thresholds[best])}
        picks = {"best": best}
        own = p.loc_convention != "wsolevaluation"  # a paper's own rule at its own threshold
        if own and fixed_threshold is not None and fixed_threshold != p.fixed_threshold:
            raise ValueError(
                f"the {p.name} protocol scores at its own threshold {p.fixed_threshold:g}, "
                f"not {fixed_threshold:g}"
            )
        if own:
            loc["fixed_threshold"] = float(p.fixed_threshold)
            loc["gt_known_loc@fixed"] = float(self.fixed_correct[0] * 100.0 / self.count)
            if self.count_with_class:
                n = float(self.count_with_class)
                loc["top1_loc@fixed"] = float(self.fixed_correct[1] * 100.0 / n)
                loc["top5_loc@fixed"] = float(self.fixed_correct[2] * 100.0 / n)
        elif fixed_threshold is not None:
            picks["fixed"] = int(np.argmin(np.abs(thresholds - fixed_threshold)))
            loc["fixed_threshold"] = float(thresholds[picks["fixed"]])
        for name, index in picks.items():
            loc[f"gt_known_loc@{name}"] = float(gt_known[index])
            if self.count_with_class:
                n = float(self.count_with_class)
                loc[f"top1_loc@{name}"] = float(self.correct_top1[mode][i50][index] * 100.0 / n)
                loc[f"top5_loc@{name}"] = float(self.correct_top5[mode][i50][index] * 100.0 / n)
        out["loc"] = loc
        if self.count_with_class:
            out["classification"] = {
                "top1_acc": self.class_top1 * 100.0 / self.count_with_class,
                "top5_acc": self.class_top5 * 100.0 / self.count_with_class,
            }
        return out


def load_mask(path: str | Path, size: tuple[int, int] = EVAL_SIZE) -> np.ndarray:
    """A mask file as the reference reads it: grayscale float32, nearest resize, ``> 0.5``."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise FileNotFoundError(f"cannot read mask {path}")
    return cv2.resize(np.float32(image), tuple(size), interpolation=cv2.INTER_NEAREST) > 0.5


def gt_mask(
    mask_paths: Sequence[Path], ignore_path: Path | None, size: tuple[int, int] = EVAL_SIZE
) -> np.ndarray:
    """(H, W) uint8: 1 foreground (union of instances), 255 ignore (ignore box minus GT), 0 else."""
    if not mask_paths:
        raise ValueError("no mask")
    fg = np.stack([load_mask(p, size) for p in mask_paths]).any(axis=0)
    out = fg.astype(np.uint8)
    if ignore_path is not None:
        ignore = load_mask(ignore_path, size) & ~fg
        out += 255 * ignore.astype(np.uint8)
    return out


@dataclass
class MaskAccumulator:
    """Streaming PxAP: histograms of score-map values at GT-foreground and background pixels."""

    gt: Mapping[str, GroundTruth]
    protocol: Protocol = field(default_factory=Protocol)

    def __post_init__(self):
        # bins [0, bw), ..., [1 - bw, 1), [1, 2), [2, 3]: the reference's right edges
        self.edges = np.append(self.protocol.thresholds, [1.0, 2.0, 3.0])
        self.fg_hist = np.zeros(len(self.edges) - 1, dtype=np.int64)
        self.bg_hist = np.zeros(len(self.edges) - 1, dtype=np.int64)
        self.count = 0

    def _histogram(self, values: np.ndarray) -> np.ndarray:
        # equals np.histogram(values, bins=edges) for values in [0, 3], without its sort
        index = np.searchsorted(self.edges, values, side="right") - 1
        index = np.minimum(index, len(self.edges) - 2)
        return np.bincount(index, minlength=len(self.edges) - 1)

    def update(self, scoremaps: np.ndarray, image_ids: Sequence[str]) -> None:
        for scoremap, image_id in zip(scoremaps, image_ids):
            g = self.gt.get(image_id)
            if g is None:
                raise KeyError(f"image id {image_id} is not in the ground truth")
            mask = gt_mask(g.mask_paths, g.ignore_path, self.protocol.eval_size)
            self.fg_hist += self._histogram(scoremap[mask == 1])
            self.bg_hist += self._histogram(scoremap[mask == 0])
            self.count += 1

    def merge(self, other: MaskAccumulator) -> MaskAccumulator:
        if other.protocol != self.protocol:
            raise ValueError("cannot merge accumulators with different protocols")
        self.fg_hist += other.fg_hist
        self.bg_hist += other.bg_hist
        self.count += other.count
        return self

    def all_reduce(self) -> None:
        def set_count(values):
            self.count = int(values[0])

        _all_reduce_arrays([self.fg_hist, self.bg_hist, np.array([self.count])], set_count)

    def compute(self) -> dict:
        """PxAP (percent) and the precision-recall curve, as the reference's MaskEvaluator."""
        fg = self.fg_hist.astype(np.float64)
        bg = self.bg_hist.astype(np.float64)
        tp = fg[::-1].cumsum()
        fn = fg.sum() - tp
        fp = bg[::-1].cumsum()
        if ((tp + fn) <= 0).all():
            raise RuntimeError("no positive ground-truth pixel in the evaluation set")
        if ((tp + fp) <= 0).all():
            raise RuntimeError("no positive prediction in the evaluation set")
        nonzero = (tp + fp) != 0
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = tp / (tp + fp)
            recall = tp / (tp + fn)
        auc = (precision[1:] * np.diff(recall))[nonzero[1:]].sum() * 100
        # curve thresholds: the lower edge of each bin, high to low
        lower = self.edges[:-1][::-1]
        return {
            "PxAP": float(auc),
            "images": self.count,
            "pr_curve": {
                "threshold": lower[nonzero].tolist(),
                "precision": precision[nonzero].tolist(),
                "recall": recall[nonzero].tolist(),
            },
        }


def all_reduce_sum(values: np.ndarray) -> np.ndarray:
    """Integer counts summed over all processes of the default torch.distributed group (the
    counts themselves when no group is running)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return values
    tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.int64))
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return tensor.cpu().numpy()


def _all_reduce_arrays(arrays: list[np.ndarray], set_scalars) -> None:
    """Sum ``arrays`` in place across processes; the last one's sums go to ``set_scalars``."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    flat = all_reduce_sum(np.concatenate([a.ravel() for a in arrays]))
    offset = 0
    for a in arrays[:-1]:
        a[...] = flat[offset : offset + a.size].reshape(a.shape)
        offset += a.size
    set_scalars(flat[offset:])


class PerImageRecorder:
    """Each image's best-IoU curve in both contour modes, for per-image results.

    Curves are kept as float32: at the 224 x 224 evaluation size an IoU is a ratio with a
    denominator of at most 224 * 224, so it lies at least 2e-7 away from any whole-percent level
    it does not equal, far more than float32 rounding; comparisons with d / 100 stay exact.
    They go to a temporary file, not memory (8 kB per image at the reference's 1000
    thresholds), and rows are made a chunk at a time, so memory stays flat however many images
    are evaluated.
    """

    def __init__(self, protocol: Protocol):
        import tempfile

        self.protocol = protocol
        self.ids: list[str] = []
        self.curves = {m: tempfile.TemporaryFile() for m in CONTOUR_MODES}
        self.top1: list = []
        self.top5: list = []
        self.pred: list = []
        self.fixed: list = []  # each image's IoU at the fixed threshold (tscam, sat conventions)

    def update(
        self, image_ids, curves, top1_correct=None, top5_correct=None, predictions=None
    ) -> None:
        n = len(image_ids)
        self.ids.extend(image_ids)
        if "fixed" in curves:
            self.fixed.extend(float(v) for v in curves["fixed"])
        for mode in CONTOUR_MODES:
            self.curves[mode].seek(0, 2)
            self.curves[mode].write(np.ascontiguousarray(curves[mode], dtype=np.float32).tobytes())
        self.top1.extend(top1_correct if top1_correct is not None else [None] * n)
        self.top5.extend(top5_correct if top5_correct is not None else [None] * n)
        self.pred.extend(predictions if predictions is not None else [None] * n)

    def _chunk(self, mode: str, start: int, stop: int) -> np.ndarray:
        width = len(self.protocol.thresholds)
        f = self.curves[mode]
        f.seek(start * width * 4)
        data = np.frombuffer(f.read((stop - start) * width * 4), dtype=np.float32)
        return data.reshape(stop - start, width)

    def rows(self, result: dict) -> list[dict]:
        """Per-image rows at the thresholds that ``result`` (from compute()) chose."""
        return list(self.iter_rows(result))

    def iter_rows(self, result: dict, chunk: int = 2048):
        """The rows of :meth:`rows`, made ``chunk`` images at a time."""
        for start in range(0, len(self.ids), chunk):
            stop = min(start + chunk, len(self.ids))
            curves = {m: self._chunk(m, start, stop) for m in CONTOUR_MODES}
            yield from self._rows(result, curves, start)

    def _rows(self, result: dict, curves: dict, offset: int):
        p = self.protocol
        grid = p.thresholds
        loc = result["loc"]
        mode = loc["contour_mode"]
        best = int(np.argmin(np.abs(grid - loc["best_threshold"])))
        fixed = (
            int(np.argmin(np.abs(grid - loc["fixed_threshold"])))
            if "fixed_threshold" in loc
            else None
        )
        b50 = int(np.argmin(np.abs(grid - result["box"]["single"]["50"]["best_threshold"])))
        v2 = np.zeros(len(curves["multi"]))
        for d in p.iou_thresholds:
            i = int(np.argmin(np.abs(grid - result["box"]["multi"][str(d)]["best_threshold"])))
            v2 += curves["multi"][:, i].astype(np.float64) >= d / 100
        v2 *= 100.0 / len(p.iou_thresholds)
        for k in range(len(v2)):
            image_id, n = self.ids[offset + k], offset + k
            iou_best = float(curves[mode][k, best])
            row = {
                "image_id": image_id,
                "iou": iou_best,
                "gt_known_correct": int(iou_best >= 0.5),
                "MaxBoxAcc_correct": int(curves["single"][k, b50] >= 0.5),
                "MaxBoxAccV2_score": float(v2[k]),
                "threshold": float(grid[best]),
            }
            if self.fixed:  # a paper's loc convention: its own IoU (tscam: top-1 at IoU > 0.5)
                row["iou_fixed"] = self.fixed[n]
            elif fixed is not None:
                row["iou_fixed"] = float(curves[mode][k, fixed])
            if self.top1[n] is not None:
                row["top1_correct"] = int(bool(self.top1[n]))
                row["top5_correct"] = int(bool(self.top5[n]))
                if "iou_fixed" in row:  # top-1 loc at the fixed threshold, by its protocol
                    tscam = self.protocol.loc_convention == "tscam"
                    hit = row["iou_fixed"] > 0.5 if tscam else row["iou_fixed"] >= 0.5
                    row["top1_loc_fixed_correct"] = int(hit and bool(self.top1[n]))
            if self.pred[n] is not None:
                row["prediction"] = int(self.pred[n])
            yield row


class LocalizationEvaluator:
    """CAMs in, every WSOL metric out: prepares score maps once, feeds the accumulators.

    Args:
        gt: {image_id: GroundTruth} (see :func:`ground_truth`).
        protocol: the protocol settings.
        boxes: evaluate boxes (needs GT boxes and image sizes).
        masks: evaluate PxAP (needs GT masks).
        engine: ``fast`` or ``reference`` for the box curves.
        per_image: also keep each image's IoU curves (:class:`PerImageRecorder`; 8 bytes per
            threshold and image) for ``per_image.csv``, galleries and bootstrap intervals.
    """

    def __init__(
        self,
        gt: Mapping[str, GroundTruth],
        protocol: Protocol | None = None,
        boxes: bool = True,
        masks: bool = False,
        engine: str = "fast",
        per_image: bool = False,
    ):
        self.protocol = protocol or Protocol()
        self.boxes = BoxAccumulator(gt, self.protocol, engine) if boxes else None
        if masks and self.protocol.center_crop is not None:
            raise ValueError(
                f"the {self.protocol.name} protocol centre-crops the images; it scores boxes, "
                "not masks: evaluate PxAP under wsolevaluation"
            )
        self.masks = MaskAccumulator(gt, self.protocol) if masks else None
        if not boxes and not masks:
            raise ValueError("nothing to evaluate: enable boxes or masks")
        self.per_image = PerImageRecorder(self.protocol) if (boxes and per_image) else None

    def update(
        self,
        cams: Sequence[np.ndarray] | np.ndarray,
        image_ids: Sequence[str],
        top1_correct: Sequence[bool] | None = None,
        top5_correct: Sequence[bool] | None = None,
        predictions: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Add raw CAMs of any size; returns the prepared (N, H, W) score maps."""
        scoremaps = self.protocol.scoremaps(cams, image_ids)
        if self.boxes is not None:
            curves = self.boxes.update(scoremaps, image_ids, top1_correct, top5_correct)
            if self.per_image is not None:
                self.per_image.update(image_ids, curves, top1_correct, top5_correct, predictions)
        if self.masks is not None:
            self.masks.update(scoremaps, image_ids)
        return scoremaps

    def merge(self, other: LocalizationEvaluator) -> LocalizationEvaluator:
        if self.boxes is not None:
            self.boxes.merge(other.boxes)
        if self.masks is not None:
            self.masks.merge(other.masks)
        return self

    def all_reduce(self) -> None:
        if self.boxes is not None:
            self.boxes.all_reduce()
        if self.masks is not None:
            self.masks.all_reduce()

    def per_image_rows(self, result: dict) -> list[dict]:
        """Per-image rows (this process's images), or [] when not recorded."""
        return self.per_image.rows(result) if self.per_image is not None else []

    def iter_per_image_rows(self, result: dict):
        """The rows of :meth:`per_image_rows`, made a chunk at a time (flat memory)."""
        return self.per_image.iter_rows(result) if self.per_image is not None else iter(())

    def compute(self, fixed_threshold: float | None = None) -> dict:
        """All metrics; ``fixed_threshold`` defaults to the protocol's own (if it has one)."""
        out: dict = {"protocol": self.protocol.to_dict()}
        if fixed_threshold is None:
            fixed_threshold = self.protocol.fixed_threshold
        if self.boxes is not None:
            out.update(self.boxes.compute(fixed_threshold))
        if self.masks is not None:
            out["mask"] = self.masks.compute()
            out["PxAP"] = out["mask"]["PxAP"]
        return out
