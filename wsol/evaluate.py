"""Evaluation entry points: a folder of CAMs (any method) or a trained model -> metrics."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .baselines import BASELINES
from .data.wsolmeta import read_wsol_metadata
from .metrics import (
    LocalizationEvaluator,
    Protocol,
    all_reduce_sum,
    fit_center_crop,
    ground_truth,
    gt_fingerprint,
)
from .results import format_table, write_boxes, write_metrics
from .rundir import cam_path
from .runtime import write_csv_rows


def _load_cam(cams_dir: Path, image_id: str) -> np.ndarray:
    path = cam_path(cams_dir, image_id)
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"no CAM for image {image_id}: {path} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"CAM file {path} of image {image_id} is a folder") from None
    except (ValueError, EOFError, OSError) as err:  # empty, truncated, not .npy, a link loop
        reason = str(err) or type(err).__name__
        raise ValueError(f"CAM file {path} of image {image_id} is unreadable: {reason}") from None


def iter_cam_batches(
    cams_dir: Path, image_ids: Sequence[str], batch_size: int = 64
) -> Iterator[tuple[list, list]]:
    """(cams, ids) batches, read ahead by a small thread pool (file reads release the GIL)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        for start in range(0, len(image_ids), batch_size):
            ids = list(image_ids[start : start + batch_size])
            yield list(pool.map(lambda i: _load_cam(cams_dir, i), ids)), ids


def _cam_batches(cams_dir, ids, batch_size, baseline, protocol):
    """CAM batches from a folder, or a baseline's map (the same for every image)."""
    if baseline is None:
        yield from iter_cam_batches(Path(cams_dir), ids, batch_size)
        return
    score = BASELINES[baseline]((protocol or Protocol()).eval_size)
    for start in range(0, len(ids), batch_size):
        batch = list(ids[start : start + batch_size])
        yield [score] * len(batch), batch


def read_predictions(path: str | Path) -> dict[str, list[int]]:
    """Class predictions from a CSV with columns ``image_id,top5`` (top5: labels separated by
    spaces, best first); gives the top-1 / top-5 loc metrics for CAMs evaluated from a folder."""
    out = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"image_id", "top5"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected the columns image_id,top5")
        for number, row in enumerate(reader, start=2):
            try:
                out[row["image_id"]] = [int(v) for v in row["top5"].split()]
            except ValueError:
                raise ValueError(
                    f"{path}:{number}: top5 must be integers separated by spaces"
                ) from None
    return out


def evaluate_cams(
    cams_dir: str | Path | None,
    metadata_dir: str | Path,
    masks_root: str | Path | None = None,
    protocol: Protocol | None = None,
    *,
    fixed_threshold: float | None = None,
    predictions: str | Path | None = None,
    engine: str = "fast",
    batch_size: int = 64,
    progress: bool = True,
    allow_outside_root: bool = False,
    baseline: str | None = None,
    split=None,
    boxes_out: bool = False,
) -> dict:
    """Evaluate a folder of CAMs (``CAM_DIR/<image_id>.npy``), or a ``baseline`` of
    :mod:`wsol.baselines` (``center``), against wsolevaluation metadata (or against ``split``,
    a loaded :class:`DatasetSplit` of any format, when given: ``metadata_dir`` is then unused).

    Boxes are evaluated when the metadata has boxes; PxAP when it has masks and ``masks_root``
    is given. Returns the result dict (see :class:`wsol.metrics.LocalizationEvaluator`).
    ``result["per_image"]`` is an iterator of per-image rows, made as it is consumed
    (:func:`save_result` writes it to per_image.csv), so memory does not grow with the images.
    ``boxes_out``: also ``result["boxes"]``, the rows of boxes.csv (needs each image's size:
    image_sizes.txt, or the image files under the metadata's image root).
    """
    if baseline is not None:
        if baseline not in BASELINES:
            raise ValueError(f"unknown baseline {baseline!r}: {', '.join(BASELINES)}")
    elif cams_dir is None or not Path(cams_dir).is_dir():
        raise FileNotFoundError(f"CAM folder {cams_dir} does not exist")
    if split is None:
        split = read_wsol_metadata(
            metadata_dir, mask_root=masks_root, allow_outside_root=allow_outside_root
        )
        do_masks = masks_root is not None and split.has_masks
    else:
        metadata_dir = f"the {split.split} split of {split.name}"
        do_masks = split.has_masks and all(r.mask_paths for r in split.records)
    if not split.records:
        raise ValueError(f"{metadata_dir} lists no image")
    do_boxes = split.has_boxes
    # a protocol with a centre crop (SAT's) scores boxes only: masks too where there are none
    do_masks = do_masks and (not do_boxes or (protocol or Protocol()).center_crop is None)
    if not do_boxes and not do_masks:
        raise ValueError(
            f"{metadata_dir} has no boxes, and no masks with a --masks root, to evaluate against"
        )
    evaluator = LocalizationEvaluator(
        ground_truth(split),
        protocol,
        boxes=do_boxes,
        masks=do_masks,
        engine=engine,
        per_image=do_boxes,
    )
    labels = {r.image_id: r.label for r in split.records}
    preds = read_predictions(predictions) if predictions else None
    ids = [r.image_id for r in split.records]
    with tqdm(total=len(ids), desc="evaluate", unit="cam", disable=not progress) as bar:
        for cams, batch_ids in _cam_batches(cams_dir, ids, batch_size, baseline, protocol):
            top1 = top5 = predicted = None
            if preds is not None:
                missing = [i for i in batch_ids if i not in preds]
                if missing:
                    raise KeyError(f"{predictions}: no prediction for image {missing[0]}")
                top1 = [preds[i][:1] == [labels[i]] for i in batch_ids]
                top5 = [labels[i] in preds[i][:5] for i in batch_ids]
                predicted = [preds[i][0] for i in batch_ids]
            evaluator.update(cams, batch_ids, top1, top5, predicted)
            bar.update(len(batch_ids))
    result = evaluator.compute(fixed_threshold)
    result["dataset"] = split.name
    result["split"] = split.split
    result["gt_fingerprint"] = gt_fingerprint(split)
    if boxes_out:  # a second pass over the CAM files, at the thresholds now known
        p = protocol or Protocol()
        records = split.by_id()
        sized = all(r.size is not None or Path(r.path).is_file() for r in split.records)
        thresholds = box_thresholds(result, p)
        if sized and thresholds:
            order = {image_id: k for k, image_id in enumerate(ids)}
            cams = _FileCams(cams_dir, ids, batch_size, baseline, p)
            rows = box_rows(cams, records, p, thresholds, labels)
            result["boxes"] = sorted(rows, key=lambda r: _box_order(r, order))
            result["box_class_names"] = list(split.class_names)
    # rows are made while per_image.csv is written (save_result): memory stays flat
    result["per_image"] = (
        {**row, "label": labels[row["image_id"]]} for row in evaluator.iter_per_image_rows(result)
    )
    return result


class CamStore:
    """The raw CAMs of an evaluation, kept for a second pass (the boxes at thresholds known only
    at the end): in memory up to ``limit_bytes``, then in a temporary folder on disk."""

    def __init__(self, limit_bytes: int = 256 * 2**20):
        self.limit, self.size = limit_bytes, 0
        self.parts: list = []  # (ids, array) in memory, or (ids, path) once spilled
        self.tmp = None

    def add(self, ids: list[str], raw: np.ndarray) -> None:
        raw = np.asarray(raw, dtype=np.float32)
        self.size += raw.nbytes
        if self.size > self.limit and self.tmp is None:
            import tempfile

            self.tmp = Path(tempfile.mkdtemp(prefix="wsol_cams_"))
            self.parts = [(i, self._spill(a)) for i, a in self.parts]
        self.parts.append((list(ids), self._spill(raw) if self.tmp is not None else raw))

    def _spill(self, raw: np.ndarray) -> Path:
        path = self.tmp / f"{len(list(self.tmp.iterdir()))}.npy"
        np.save(path, raw)
        return path

    def __iter__(self):
        for ids, part in self.parts:
            yield ids, (np.load(part) if isinstance(part, Path) else part)

    def close(self) -> None:
        if self.tmp is not None:
            import shutil

            shutil.rmtree(self.tmp, ignore_errors=True)
        self.parts, self.tmp = [], None


def box_thresholds(result: dict, protocol: Protocol) -> dict[str, float]:
    """The thresholds an evaluation's boxes are written at: ``chosen`` (the fixed threshold of
    the loc metrics if there is one: given, chosen on val or the protocol's; else the best
    one) and ``best@<IoU>`` (the threshold of each IoU's MaxBoxAcc, in the protocol's contour
    mode). Empty where there is nothing to choose a threshold by (masks only, no threshold)."""
    out: dict[str, float] = {}
    loc = result.get("loc", {})
    if "fixed_threshold" in loc:
        out["chosen"] = float(loc["fixed_threshold"])
    elif "best_threshold" in loc:
        out["chosen"] = float(loc["best_threshold"])
    elif protocol.fixed_threshold is not None:
        out["chosen"] = float(protocol.fixed_threshold)
    for d, values in result.get("box", {}).get(protocol.mode, {}).items():
        out[f"best@{d}"] = float(values["best_threshold"])
    return out


def box_rows(
    store, records: dict, protocol: Protocol, thresholds: dict[str, float], classes: dict
) -> list[dict]:
    """The rows of boxes.csv: every box of every image of ``store`` at each threshold, in the
    original image's pixels (``records[image_id]``'s size, or its file's). ``classes``: the class
    each image's CAM was read for."""
    from PIL import Image

    from .localize import box_to_image, boxes_from_scoremap, sat_box, to_uint8, tscam_box

    rows = []
    names = list(thresholds)
    own_box = {  # the box a paper's own loc convention scored at its threshold
        "tscam": lambda m, t: tscam_box(to_uint8(m), t),
        "sat": sat_box,
    }.get(protocol.loc_convention)
    for ids, raw in store:
        maps = protocol.scoremaps(raw, ids, "zero")
        for image_id, scoremap in zip(ids, maps):
            record = records[image_id]
            size = record.size
            if size is None:
                with Image.open(record.path) as im:
                    size = im.size
            swept = [n for n in names if not (n == "chosen" and own_box)]
            sets = dict(zip(swept, boxes_from_scoremap(
                scoremap, [thresholds[n] for n in swept], protocol.multi_contour
            )))  # fmt: skip
            if own_box and "chosen" in names:
                sets["chosen"] = [own_box(scoremap, thresholds["chosen"])]
            for which in names:
                boxes = sets[which]
                for k, box in enumerate(boxes):
                    x0, y0, x1, y1 = (int(v) for v in box)
                    ox0, oy0, ox1, oy1 = box_to_image(
                        box, protocol.eval_size, size, protocol.center_crop
                    )
                    rows.append(
                        {
                            "image_id": image_id,
                            "class": int(classes[image_id]),
                            "which": which,
                            "score_threshold": thresholds[which],
                            "box": k,
                            "x0": ox0,
                            "y0": oy0,
                            "x1": ox1,
                            "y1": oy1,
                            "score": float(scoremap[y0 : y1 + 1, x0 : x1 + 1].mean()),
                            "image_width": int(size[0]),
                            "image_height": int(size[1]),
                        }  # fmt: skip
                    )
    return rows


def _box_order(row: dict, order: dict) -> tuple:
    """boxes.csv's order: images as in the split, ``chosen`` first, then by IoU and box."""
    which = row["which"]
    return (order[row["image_id"]], which != "chosen", which, row["box"])


class _FileCams:
    """A CAM folder read again, batch by batch, for :func:`box_rows`."""

    def __init__(self, cams_dir, ids, batch_size, baseline, protocol):
        self.args = (cams_dir, ids, batch_size, baseline, protocol)

    def __iter__(self):
        for cams, batch_ids in _cam_batches(*self.args):
            yield batch_ids, cams


def _add_labels(rows: list[dict], labels: dict[str, int]) -> list[dict]:
    for row in rows:
        row["label"] = labels[row["image_id"]]
    return rows


def save_result(
    result: dict, out_dir: str | Path, context: dict | None = None, echo: bool = True
) -> None:
    """Write metrics.json / metrics.csv (and per_image.csv when the result has per-image rows)
    and print the headline table."""
    result = dict(result)
    rows = result.pop("per_image", None)
    boxes = result.pop("boxes", None)
    names = result.pop("box_class_names", None) or (context or {}).get("class_names") or []
    json_path, csv_path = write_metrics(out_dir, result, context)
    if boxes:
        write_boxes(out_dir, boxes, list(names))
    wrote_rows = rows is not None and write_csv_rows(Path(out_dir) / "per_image.csv", rows) > 0
    if echo:
        print(format_table(result))
        files = [json_path, csv_path] + ([Path(out_dir) / "per_image.csv"] if wrote_rows else [])
        print("wrote " + ", ".join(str(f) for f in files))


# ---------------------------------------------------------------------------------- models
def _shard(n: int) -> list[int]:
    """This process's share of n items, without padding (every image is evaluated once)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return list(range(dist.get_rank(), n, dist.get_world_size()))
    return list(range(n))


def evaluate_model(
    model,
    split,
    protocol: Protocol | None = None,
    *,
    device=None,
    crop_size: int = 224,
    batch_size: int = 64,
    workers: int = 2,
    cam_method: str = "cam",
    fixed_threshold: float | None = None,
    save_cams: str | Path | None = None,
    amp_dtype=None,
    per_image: bool = True,
    progress: bool = True,
    cam_reader=None,
    boxes_out: bool = False,
    overlap: bool | None = None,
) -> dict:
    """Classify a split and evaluate its CAMs (of the GT class) in the same forward pass.

    Under torch.distributed each process takes every world_size-th image and the accumulators
    are summed across processes; every process returns the full result.

    Args:
        model: a :class:`wsol.models.WSOLModel`.
        split: the :class:`DatasetSplit` to evaluate (boxes and/or masks).
        cam_reader: the training method's CAM hook (``Method.cams``); default the model's.
        save_cams: write each raw CAM, as the evaluator reads it (float32, at the feature
            map's resolution for CAM: 14 x 14 is 0.9 KB a file; at the input resolution for the
            Grad-CAM family), to ``save_cams/<image_id>.npy``; ``wsol evaluate --cams`` resizes
            and normalises them as this evaluation did, so it reproduces the numbers exactly.
        boxes_out: also return ``result["boxes"]``, the rows of boxes.csv (:func:`box_rows`:
            every image's boxes at the chosen threshold and at each IoU's best one).
        overlap: sweep each batch's boxes and masks in a worker thread while the next batch's
            CAMs are extracted (the results are the same; False: one after the other). None
            (default): overlap where the sweep has cores of its own, that is when the model runs
            on an accelerator or torch leaves CPU cores free (:func:`sweep_cores`); on a CPU
            whose cores torch's threads all take, the two parts would only share the cores.
    """
    import torch
    from torch.utils.data import DataLoader, Subset

    from .cam import extract
    from .data.dataset import RecordDataset, batches_of, center_and_ten_crops, eval_transform

    if not split.records:
        raise ValueError(f"the {split.split} split of {split.name} has no image to evaluate")
    p = protocol or Protocol()
    transform = eval_transform(crop_size)
    if p.center_crop is not None:
        resize, crop = p.center_crop
        if crop != crop_size:
            raise ValueError(
                f"the {p.name} protocol centre-crops to {crop} pixels, but the model takes "
                f"{crop_size} (fit it to the run with wsol.metrics.fit_center_crop)"
            )
        transform = eval_transform(crop_size, resize, crop=not p.ten_crop)
    device = device or next(model.parameters()).device
    do_boxes = split.has_boxes
    do_masks = split.has_masks and all(r.mask_paths for r in split.records)
    do_masks = do_masks and (not do_boxes or p.center_crop is None)  # as in evaluate_cams
    evaluator = None
    if do_boxes or do_masks:
        evaluator = LocalizationEvaluator(
            ground_truth(split), protocol, boxes=do_boxes, masks=do_masks, per_image=per_image
        )
    dataset = Subset(RecordDataset(split, transform, check_size=True), _shard(len(split)))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    top1_total = top5_total = seen = 0
    ids_all = [r.image_id for r in split.records]
    store = CamStore() if boxes_out and evaluator is not None else None
    # the box / mask sweep of a batch runs in a worker thread while the next batch's CAMs are
    # extracted (the sweep's kernel releases the GIL): evaluation waits for the slower of the two,
    # not their sum; one worker keeps the batches in order
    cores = sweep_cores(device)
    if overlap is None:
        overlap = cores > 0
    sweeper = None
    if evaluator is not None and overlap:
        sweeper = ThreadPoolExecutor(
            max_workers=1, initializer=_limit_sweep_threads, initargs=(cores,)
        )
    pending = None
    bar = tqdm(total=len(dataset), desc=f"evaluate {split.split}", unit="img", disable=not progress)
    for images, labels, indices in batches_of(loader):
        images = images.to(device, non_blocking=True)
        labels = labels.to(device)
        crops = None
        if p.ten_crop:  # the CAM from the centre crop, the classes from all ten
            images, crops = center_and_ten_crops(images, crop_size)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits, cams = extract(model, images, labels, cam_method, cam_reader, progress)
            if crops is not None:
                logits = ten_crop_scores(model, crops)
        top5 = logits.float().topk(min(5, logits.shape[1]), dim=1).indices
        top1_ok = (top5[:, 0] == labels).cpu().numpy()
        top5_ok = (top5 == labels[:, None]).any(dim=1).cpu().numpy()
        top1_total += int(top1_ok.sum())
        top5_total += int(top5_ok.sum())
        seen += len(labels)
        ids = [ids_all[i] for i in indices.tolist()]
        if evaluator is not None:
            raw = cams.float().cpu().numpy()
            predicted = top5[:, 0].tolist()
            if sweeper is None:
                evaluator.update(raw, ids, top1_ok, top5_ok, predicted)
            else:
                if pending is not None:
                    pending.result()  # the previous batch's sweep (and its errors) first
                pending = sweeper.submit(evaluator.update, raw, ids, top1_ok, top5_ok, predicted)
            if store is not None:
                store.add(ids, raw)
            if save_cams is not None:  # the raw float32 map the evaluator read: exact, small
                for image_id, cam in zip(ids, raw):
                    path = cam_path(save_cams, image_id)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    np.save(path, cam)
        bar.update(len(ids))
    if pending is not None:
        pending.result()
    if sweeper is not None:
        sweeper.shutdown()
    bar.close()
    counts = np.array([top1_total, top5_total, seen], dtype=np.int64)
    if evaluator is not None:
        evaluator.all_reduce()
    counts = all_reduce_sum(counts)
    result = (
        evaluator.compute(fixed_threshold)
        if evaluator is not None
        else {"protocol": (protocol or Protocol()).to_dict()}
    )
    result["classification"] = {
        "top1_acc": counts[0] * 100.0 / counts[2],
        "top5_acc": counts[1] * 100.0 / counts[2],
    }
    result["images"] = int(counts[2])
    result["dataset"], result["split"], result["cam_method"] = split.name, split.split, cam_method
    result["gt_fingerprint"] = gt_fingerprint(split)
    if evaluator is not None and per_image:
        labels = {r.image_id: r.label for r in split.records}
        rows = _gather_rows(evaluator.per_image_rows(result))
        order = {image_id: k for k, image_id in enumerate(ids_all)}
        result["per_image"] = sorted(
            _add_labels(rows, labels), key=lambda row: order[row["image_id"]]
        )
    if store is not None:
        try:
            thresholds = box_thresholds(result, protocol or Protocol())
            labels = {r.image_id: r.label for r in split.records}
            rows = box_rows(store, split.by_id(), protocol or Protocol(), thresholds, labels)
        finally:
            store.close()
        order = {image_id: k for k, image_id in enumerate(ids_all)}
        result["boxes"] = sorted(
            _gather_rows(rows), key=lambda r: (order[r["image_id"]], r["which"], r["box"])
        )
    return result


def ten_crop_scores(model, crops):
    """(B, K) class scores of a batch from its ten crops (10, B, 3, c, c): the mean of the ten
    softmaxes, as SAT's evaluator ranks classes with ``--tencrop``."""
    import torch

    from .cam import eval_mode

    with torch.no_grad(), eval_mode(model):
        logits = torch.stack([model(c) for c in crops])
    return logits.float().softmax(dim=-1).mean(dim=0)


def _cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may run on
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def sweep_cores(device) -> int:
    """The CPU cores the box sweep can have to itself while CAMs are extracted on ``device``.

    On an accelerator: every core (the extraction runs on the device). On the CPU: the cores
    torch's intra-op threads leave free (0 when they take them all, as by default).
    """
    import torch

    cores = _cpu_cores()
    if getattr(device, "type", str(device)) != "cpu":
        return cores
    return max(0, cores - torch.get_num_threads())


def _limit_sweep_threads(cores: int) -> None:
    # in the sweep's worker thread: numba's thread count is per calling thread
    if cores > 0:
        import numba

        numba.set_num_threads(min(cores, numba.config.NUMBA_NUM_THREADS))


def _gather_rows(rows: list[dict]) -> list[dict]:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return rows
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, rows)
    return [row for part in gathered for row in part]


def check_classes(ckpt: dict, split) -> None:
    """Refuse data whose classes are not the checkpoint's: a label the classifier does not have,
    or a different number of named classes."""
    trained = int(ckpt["num_classes"])
    labels = max((r.label for r in split.records), default=-1) + 1
    named = len(split.class_names) if split.class_names else None
    if labels > trained or (named is not None and named != trained):
        found = named if named is not None else labels
        raise ValueError(
            f"the checkpoint classifies {trained} classes, but the {split.split} split of "
            f"{split.name} has {found}: evaluate it on the data it was trained on"
        )


def eval_folder_name(
    split: str = "test",
    protocol: Protocol | None = None,
    cam_method: str = "cam",
    checkpoint: str = "last",
    val_threshold: bool = False,
    fixed_threshold: float | None = None,
) -> str:
    """The default folder name of an evaluation inside its run: ``eval_<split>``, then one part
    for each choice that differs from the default, so that no two kinds of evaluation share a
    folder: ``_<protocol>`` (a named protocol other than wsolevaluation), ``_p<hash>`` (protocol
    settings changed from the named ones), ``_<cam method>``, ``_best`` (the best checkpoint),
    ``_valthr`` (threshold chosen on val) or ``_thr<value>`` (a given threshold). E.g.
    ``eval_test``, ``eval_test_cutmix2019``, ``eval_test_scorecam_best``."""
    import dataclasses
    import hashlib

    from .metrics import ADDED_PROTOCOL_FIELDS, PROTOCOLS

    protocol = protocol or Protocol()
    parts = [f"eval_{split}"]
    if protocol.name != "wsolevaluation":
        parts.append(protocol.name)
    preset = PROTOCOLS.get(protocol.name)
    if preset is None or dataclasses.asdict(preset) != dataclasses.asdict(protocol):
        settings = {  # fields added later leave the names of older folders as they were
            k: v
            for k, v in dataclasses.asdict(protocol).items()
            if not (k in ADDED_PROTOCOL_FIELDS and v == ADDED_PROTOCOL_FIELDS[k])
        }
        text = json.dumps(settings, sort_keys=True, default=str)
        parts.append("p" + hashlib.sha1(text.encode()).hexdigest()[:6])
    if cam_method != "cam":
        parts.append(cam_method)
    if checkpoint != "last":
        parts.append(checkpoint)
    if val_threshold:
        parts.append("valthr")
    elif fixed_threshold is not None:
        parts.append(f"thr{fixed_threshold:g}")
    return "_".join(parts)


def evaluation_key(**choices) -> dict:
    """What makes one evaluation different from another (saved as ``context["evaluation"]``):
    an existing folder is replaced only by an evaluation with the same key."""
    return json.loads(json.dumps(choices, sort_keys=True, default=str))


def check_out_folder(out: Path, key: dict, overwrite: bool = False) -> None:
    """Refuse, before any work, to write into a folder that holds another evaluation (or
    anything else) unless ``overwrite``; the same evaluation again may replace it."""
    out = Path(out)
    if overwrite or not out.exists():
        return
    if out.is_file():
        raise FileExistsError(f"--out {out} is a file, not a folder")
    meta = out / "metrics.json"
    if not meta.is_file():
        if any(out.iterdir()):
            raise FileExistsError(
                f"--out {out} is a folder that holds no evaluation: give another --out, or "
                "--overwrite to replace what is in it"
            )
        return
    try:
        had = json.loads(meta.read_text(encoding="utf-8")).get("context", {}).get("evaluation")
    except (ValueError, OSError, AttributeError):
        had = None
    if had == key:
        return
    if had is None:
        why = "an evaluation written by another version of wsol (or unreadable)"
    else:
        diff = [k for k in sorted(set(had) | set(key)) if had.get(k) != key.get(k)]
        shown = "; ".join(f"{k} {had.get(k)!r}, not {key.get(k)!r}" for k in diff[:3])
        why = f"another evaluation ({shown})"
    raise FileExistsError(
        f"{out} holds {why}: give another --out, or --overwrite to replace it (an evaluation "
        "folder is never partly overwritten)"
    )


def evaluate_checkpoint(
    model_path: str | Path,
    out_dir: str | Path | None = None,
    *,
    split: str = "test",
    checkpoint: str = "last",
    overrides: Sequence[str] = (),
    protocol: Protocol | None = None,
    cam_method: str = "cam",
    batch_size: int = 64,
    workers: int = 2,
    device: str = "auto",
    save_cams: bool = False,
    val_threshold: bool = False,
    fixed_threshold: float | None = None,
    progress: bool = True,
    echo: bool = True,
    label: str | None = None,
    overwrite: bool = False,
    fix_sizes: bool = False,
) -> dict:
    """Evaluate a run folder or checkpoint on a split of the data it was trained on.

    Args:
        model_path: a run folder or a checkpoint file.
        checkpoint: with a run folder, ``last`` (default: the reference reports the last
            checkpoint) or ``best`` (best val score; refused when val is the test split).
        out_dir: where metrics.json, metrics.csv and per_image.csv go (default
            ``RUN/<eval_folder_name(...)>``, e.g. ``RUN/eval_test``: one folder per kind of
            evaluation); ``save_cams`` adds ``cams/<image_id>.npy``. The folder is written
            whole at the end (staged beside it); one holding another evaluation is refused
            unless ``overwrite``.
        overrides: ``section.key=value`` changes to the run's config (e.g. ``data.root=...``).
        val_threshold: first evaluate the ``val`` split and use its best CAM threshold as the
            fixed threshold of the loc metrics (saved in ``OUT/val``).
        label: the row name ``wsol compare`` gives it (default: the training method).
        fix_sizes: take every image's size from its file where the metadata says otherwise
            (and say how many), instead of refusing the first such image.
    """
    from .config import anchor_data_paths, config_from_dict
    from .data.splits import load_split
    from .runtime import (
        amp_dtype,
        load_checkpoint_model,
        method_of,
        publish_folder,
        runtime_record,
        setup_distributed,
        stage_folder,
    )

    d = setup_distributed(device)
    model_path = Path(model_path)
    protocol = protocol or Protocol()
    run_dir = model_path if model_path.is_dir() else model_path.parent
    model, cfg_dict, ckpt = load_checkpoint_model(model_path, d.device, checkpoint)
    cfg = config_from_dict(cfg_dict, list(overrides))
    fitted = fit_center_crop(protocol, cfg.data.resize_size, cfg.data.crop_size)
    if fitted != protocol and d.main and echo:
        print(
            f"{protocol.name}: centre crop {fitted.center_crop[0]} -> {fitted.center_crop[1]} "
            "from the run's data.resize_size and data.crop_size (the protocol's own: "
            f"{protocol.center_crop[0]} -> {protocol.center_crop[1]})"
        )
    protocol = fitted
    name = eval_folder_name(split, protocol, cam_method, checkpoint, val_threshold, fixed_threshold)
    out = Path(out_dir) if out_dir is not None else run_dir / name
    key = evaluation_key(
        split=split,
        checkpoint=str(Path(ckpt["path"]).resolve()),
        cam_method=cam_method,
        protocol=protocol.to_dict(),
        threshold="val" if val_threshold else fixed_threshold,
        overrides=sorted(overrides),
        fix_sizes=fix_sizes,
    )
    check_out_folder(out, key, overwrite)
    epoch = int(ckpt.get("epoch", -1)) + 1
    if d.main and echo:
        print(f"checkpoint: {ckpt['path']} (epoch {epoch})")
    given = {o.split("=", 1)[0].removeprefix("data.") for o in overrides if o.startswith("data.")}
    cfg = anchor_data_paths(cfg, ckpt.get("workdir"), keep=given)
    try:
        target = load_split(cfg.data, split)
    except FileNotFoundError as err:
        if "root" in given:
            raise
        raise FileNotFoundError(
            f"{err}: the data this run ({ckpt['path']}) was trained on are not where they "
            "were; if they moved, give their new root with --data ROOT (and --set "
            "data.metadata=... for metadata kept elsewhere)"
        ) from None
    check_classes(ckpt, target)
    if fix_sizes:
        from .data.records import correct_sizes

        target, changed = correct_sizes(target)
        if changed and d.main and echo:
            print(
                f"corrected the size of {len(changed)} image(s) whose metadata disagreed with the "
                f"file (first: {changed[0]}); the boxes are scaled by the files' sizes"
            )
    dtype = amp_dtype(cfg, d.device)
    common = dict(
        device=d.device,
        crop_size=cfg.data.crop_size,
        batch_size=batch_size,
        workers=workers,
        cam_method=cam_method,
        cam_reader=method_of(cfg_dict).cams,
    )
    context = {
        "run": run_dir.name,
        "dataset": target.name,
        "backbone": cfg.model.name,
        "method": label or cfg.method.method,
        "trained_method": cfg.method.method,
        "seed": cfg.seed,
        "cam_method": cam_method,
        "checkpoint": str(Path(ckpt["path"]).resolve()),
        "epoch": epoch,
        "saved_cams": bool(save_cams),
        "data": dataclasses.asdict(cfg.data),  # after overrides: where the images really are
        "evaluation": key,
        "runtime": ckpt.get("runtime"),  # how the evaluated model was trained
        "eval_runtime": runtime_record(d, batch_size),  # how this evaluation ran
        "class_names": list(target.class_names),
    }
    stage = stage_folder(out) if d.main else out.parent / f".{out.name}.partial"
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()  # the stage exists before any rank writes CAMs into it
    try:
        if val_threshold:
            val = evaluate_model(
                model,
                load_split(cfg.data, "val", cfg.seed),
                protocol,
                amp_dtype=dtype,
                per_image=False,
                progress=progress and d.main,
                **common,
            )
            fixed_threshold = val["loc"]["best_threshold"]
            if d.main:
                save_result(val, stage / "val", {**context, "split": "val"}, echo=False)
        result = evaluate_model(
            model,
            target,
            protocol,
            fixed_threshold=fixed_threshold,
            save_cams=stage / "cams" if save_cams else None,
            amp_dtype=dtype,
            progress=progress and d.main,
            boxes_out=True,
            **common,
        )
        if d.world > 1:
            import torch.distributed as dist

            dist.barrier()  # every rank's CAMs are written
        if d.main:
            save_result(result, stage, {**context, "split": split}, echo=False)
            publish_folder(stage, out)
    except BaseException:
        if d.main:  # nothing half-written is left beside the folder
            import shutil

            shutil.rmtree(stage, ignore_errors=True)
        raise
    if d.main:
        if echo:
            print(format_table(result))
            files = ["metrics.json", "metrics.csv", "per_image.csv", "boxes.csv", "boxes_coco.json"]
            print("wrote " + ", ".join(str(out / f) for f in files if (out / f).is_file()))
        if echo and save_cams:
            count = sum(1 for _ in (out / "cams").rglob("*.npy"))
            print(f"wrote {count} CAMs (raw float32 maps) to {out / 'cams'}")
        if echo and val_threshold:
            print(f"wrote the val evaluation that chose the threshold to {out / 'val'}")
    return result
