"""From a data config to the train / val / test splits of a run."""

from __future__ import annotations

from pathlib import Path

from .cub import read_cub
from .imagenet import read_imagenet_train, read_imagenet_val, read_wnids
from .records import DatasetSplit
from .wsolmeta import read_class_names, read_wsol_metadata, split_train_val

SPLIT_NAMES = ("train", "val", "test")


def load_split(data, split: str) -> DatasetSplit:
    """One split (train, val or test) as the data config describes it (see ``DataConfig``).

    Fails with FileNotFoundError before any work if a path is missing.
    """
    if split not in SPLIT_NAMES:
        raise ValueError(f"split must be one of {SPLIT_NAMES}, not {split!r}")
    root = Path(data.root) if data.root else None
    if root is None or not root.exists():
        raise FileNotFoundError(f"data root {data.root!r} does not exist")
    if data.format == "cub":
        if split == "test":
            return read_cub(root, "test")
        train = read_cub(root, "train", read_sizes=split == "val")
        if data.val_per_class <= 0:
            if split == "val":
                raise ValueError("data.val_per_class is 0: there is no val split")
            return train
        parts = dict(zip(("train", "val"), split_train_val(train, data.val_per_class, seed=0)))
        return parts[split]
    if data.format == "wsol":
        if not data.metadata:
            raise ValueError(
                "data.format wsol needs data.metadata (the folder holding train/ val/ test/)"
            )
        meta = Path(data.metadata) / split
        if not meta.is_dir():
            raise FileNotFoundError(f"metadata split folder {meta} does not exist")
        return read_wsol_metadata(
            meta, root, data.masks or root, class_names=read_class_names(meta) or None
        )
    if data.format == "imagenet":
        wnids = read_wnids(root)
        if split == "train":
            return read_imagenet_train(root, wnids)
        if data.metadata:
            return read_wsol_metadata(Path(data.metadata) / split, root, class_names=wnids)
        if not data.annotations:
            raise ValueError(
                "data.format imagenet needs data.annotations (val XML folder or LOC_val_solution.csv)"
            )
        out = read_imagenet_val(root, data.annotations, wnids)
        out.split = split
        return out
    raise ValueError(f"unknown data.format {data.format!r}: cub, wsol or imagenet")
