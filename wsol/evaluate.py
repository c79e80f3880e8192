"""Evaluation entry points: a folder of CAMs (any method) or a trained model -> metrics."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .data.wsolmeta import read_wsol_metadata
from .metrics import LocalizationEvaluator, Protocol, ground_truth
from .report import format_table, write_metrics


def cam_path(cams_dir: str | Path, image_id: str) -> Path:
    """Where the CAM of ``image_id`` lies: ``CAM_DIR/<image_id>.npy`` (the reference layout)."""
    return Path(cams_dir) / (image_id + ".npy")


def _load_cam(cams_dir: Path, image_id: str) -> np.ndarray:
    path = cam_path(cams_dir, image_id)
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"no CAM for image {image_id}: {path} does not exist") from None
    except ValueError as err:
        raise ValueError(f"CAM file {path} of image {image_id} is unreadable: {err}") from None


def iter_cam_batches(
    cams_dir: Path, image_ids: Sequence[str], batch_size: int = 64
) -> Iterator[tuple[list, list]]:
    """(cams, ids) batches, read ahead by a small thread pool (file reads release the GIL)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        for start in range(0, len(image_ids), batch_size):
            ids = list(image_ids[start : start + batch_size])
            yield list(pool.map(lambda i: _load_cam(cams_dir, i), ids)), ids


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
    cams_dir: str | Path,
    metadata_dir: str | Path,
    masks_root: str | Path | None = None,
    protocol: Protocol | None = None,
    *,
    fixed_threshold: float | None = None,
    predictions: str | Path | None = None,
    engine: str = "fast",
    batch_size: int = 64,
    progress: bool = True,
) -> dict:
    """Evaluate a folder of CAMs (``CAM_DIR/<image_id>.npy``) against wsolevaluation metadata.

    Boxes are evaluated when the metadata has boxes; PxAP when it has masks and ``masks_root``
    is given. Returns the result dict (see :class:`wsol.metrics.LocalizationEvaluator`).
    """
    cams_dir = Path(cams_dir)
    if not cams_dir.is_dir():
        raise FileNotFoundError(f"CAM folder {cams_dir} does not exist")
    split = read_wsol_metadata(metadata_dir, mask_root=masks_root)
    if not split.records:
        raise ValueError(f"{metadata_dir} lists no image")
    do_masks = masks_root is not None and split.has_masks
    do_boxes = split.has_boxes
    if not do_boxes and not do_masks:
        raise ValueError(
            f"{metadata_dir} has no boxes, and no masks with a --masks root, to evaluate against"
        )
    evaluator = LocalizationEvaluator(
        ground_truth(split), protocol, boxes=do_boxes, masks=do_masks, engine=engine
    )
    labels = {r.image_id: r.label for r in split.records}
    preds = read_predictions(predictions) if predictions else None
    ids = [r.image_id for r in split.records]
    with tqdm(total=len(ids), desc="evaluate", unit="cam", disable=not progress) as bar:
        for cams, batch_ids in iter_cam_batches(cams_dir, ids, batch_size):
            top1 = top5 = None
            if preds is not None:
                missing = [i for i in batch_ids if i not in preds]
                if missing:
                    raise KeyError(f"{predictions}: no prediction for image {missing[0]}")
                top1 = [preds[i][:1] == [labels[i]] for i in batch_ids]
                top5 = [labels[i] in preds[i][:5] for i in batch_ids]
            evaluator.update(cams, batch_ids, top1, top5)
            bar.update(len(batch_ids))
    result = evaluator.compute(fixed_threshold)
    result["dataset"] = split.name
    result["split"] = split.split
    return result


def save_result(
    result: dict, out_dir: str | Path, context: dict | None = None, echo: bool = True
) -> None:
    """Write metrics.json / metrics.csv and print the headline table."""
    json_path, csv_path = write_metrics(out_dir, result, context)
    if echo:
        print(format_table(result))
        print(f"wrote {json_path} and {csv_path}")
