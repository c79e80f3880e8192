"""From a data config to the train / val / test splits of a run."""

from __future__ import annotations

from pathlib import Path

from .cub import read_cub
from .imagenet import read_imagenet_train, read_imagenet_val, read_wnids
from .records import DatasetSplit
from .wsolmeta import (
    cap_per_class,
    keep_ids,
    read_class_names,
    read_proxy_ids,
    read_wsol_metadata,
    split_train_val,
)

SPLIT_NAMES = ("train", "val", "test")


class NoValSplit(ValueError):
    """The data config describes no val split."""


def val_source(data) -> str:
    """Where the val split of a data config comes from, in words (recorded by every run)."""
    if data.format == "cub":
        if data.val_per_class > 0:
            return (
                f"hold-out: {data.val_per_class} training images per class of {data.root} "
                "(not trained on)"
            )
        return "none (native CUB layout without data.val_per_class)"
    if data.metadata:
        if not (Path(data.metadata) / "val").is_dir():
            return "none (no val/ beside the metadata)"
        cap = (
            f", {data.val_per_class} images per class (the reference's num_val_sample_per_class)"
            if data.val_per_class > 0
            else ""
        )
        return f"metadata: {Path(data.metadata) / 'val'}{cap}"
    if data.format == "imagenet":
        return f"the test split (ILSVRC val of {data.root}: no separate val metadata)"
    return "none"


def mask_root(data, root: Path) -> Path:
    """Where mask paths are relative to: ``data.masks``; else, as ``wsol data check`` finds
    them, the ``segmentations/`` beside an ``images/`` root (CUB's layout); else the root."""
    if data.masks:
        return Path(data.masks)
    beside = root.parent / "segmentations"
    if root.name == "images" and beside.is_dir():
        return beside
    return root


def check_mask_files(split: DatasetSplit) -> None:
    """Every mask file of ``split`` exists: a missing one fails before the first epoch (not at
    the end of it, when the val split is first evaluated), naming the file."""
    for r in split.records:
        for path in (*r.mask_paths, *((r.ignore_path,) if r.ignore_path else ())):
            if not Path(path).is_file():
                raise FileNotFoundError(
                    f"mask {path} of image {r.image_id} ({split.split} split) does not exist: "
                    "set data.masks to the mask root (wsol data check lists every missing file)"
                )


def val_is_test(data) -> bool:
    """True when the config's val split is its test split (ImageNet with only the ILSVRC val
    boxes, or metadata whose val and test folders are one): choosing a checkpoint on it would
    choose on the test set."""
    if data.format == "imagenet" and not data.metadata:
        return True
    if data.format in ("wsol", "imagenet") and data.metadata:
        val, test = Path(data.metadata) / "val", Path(data.metadata) / "test"
        return val.exists() and test.exists() and val.resolve() == test.resolve()
    return False


def load_split(data, split: str, seed: int = 0) -> DatasetSplit:
    """One split (train, val or test) as the data config describes it (see ``DataConfig``).

    ``seed``: the run's seed, which chooses the val images kept by ``data.val_per_class`` in the
    metadata layouts, as the reference's seed does (:func:`~wsol.data.wsolmeta.cap_per_class`).
    Fails with FileNotFoundError before any work if a path is missing.
    """
    out = _load_split(data, split)
    if data.format == "cub":
        return out
    if split == "val" and data.val_per_class > 0:
        out = cap_per_class(out, data.val_per_class, seed)
    if split == "train" and getattr(data, "proxy_train", False):
        if not data.metadata:
            raise ValueError("data.proxy_train needs data.metadata (its train/image_ids_proxy.txt)")
        meta = Path(data.metadata) / "train"
        out = keep_ids(out, read_proxy_ids(meta), meta / "image_ids_proxy.txt")
    return out


def _load_split(data, split: str) -> DatasetSplit:
    if split not in SPLIT_NAMES:
        raise ValueError(f"split must be one of {SPLIT_NAMES}, not {split!r}")
    root = Path(data.root) if data.root else None
    if root is None or not root.exists():
        raise FileNotFoundError(f"data root {data.root!r} does not exist")
    outside = getattr(data, "allow_outside_root", False)
    if data.format == "cub":
        if split == "test":
            return read_cub(root, "test", allow_outside_root=outside)
        if data.val_per_class <= 0 and split == "val":
            raise NoValSplit(
                "the native CUB layout has no val split: use data.format wsol with "
                "wsolevaluation's metadata/CUB (its separate val images, as the reference), or "
                "hold training images out with data.val_per_class=N"
            )
        train = read_cub(root, "train", read_sizes=split == "val", allow_outside_root=outside)
        if data.val_per_class <= 0:
            return train
        parts = dict(zip(("train", "val"), split_train_val(train, data.val_per_class, seed=0)))
        return parts[split]
    if data.format == "wsol":
        if not data.metadata:
            raise ValueError(
                "data.format wsol needs data.metadata (the folder holding train/ val/ test/)"
            )
        meta = Path(data.metadata) / split
        if not meta.is_dir() and split == "val" and Path(data.metadata).is_dir():
            raise NoValSplit(f"metadata folder {data.metadata} has no val/ split")
        if not meta.is_dir():
            raise FileNotFoundError(f"metadata split folder {meta} does not exist")
        return read_wsol_metadata(
            meta,
            root,
            mask_root(data, root),
            class_names=read_class_names(meta) or None,
            allow_outside_root=outside,
        )
    if data.format == "imagenet":
        wnids = read_wnids(root)
        if split == "train":
            return read_imagenet_train(root, wnids)
        if data.metadata:
            return read_wsol_metadata(
                Path(data.metadata) / split, root, class_names=wnids, allow_outside_root=outside
            )
        if not data.annotations:
            raise ValueError(
                "data.format imagenet needs data.annotations (val XML folder or LOC_val_solution.csv)"
            )
        out = read_imagenet_val(root, data.annotations, wnids)
        out.split = split
        return out
    raise ValueError(f"unknown data.format {data.format!r}: cub, wsol or imagenet")
