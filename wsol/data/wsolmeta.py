"""The wsolevaluation metadata layout (clovaai/wsolevaluation), read and written.

One folder per split, ``metadata/<DATASET>/<split>/``, holding comma-separated text files::

    image_ids.txt       <image_id>                       (path relative to the image root)
    class_labels.txt    <image_id>,<label>               (0-based)
    image_sizes.txt     <image_id>,<width>,<height>      (absent for OpenImages)
    localization.txt    <image_id>,<x0>,<y0>,<x1>,<y1>   (boxes: CUB, ILSVRC; one line per box)
                  or    <image_id>,<mask_path>,<ignore_path>   (OpenImages; one line per instance
                        mask, the ignore path only on an image's first line)

Our own extension: ``masks.txt`` in the mask form above, beside a box ``localization.txt``, for
sets that have both boxes and masks (CUB with its segmentations, the synthetic set). The
reference tools ignore it.

Splits: ``train`` (image-level labels), ``val`` (the "train-fullsup" split, used only to choose
hyperparameters and the CAM threshold) and ``test``.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from .records import (
    DatasetSplit,
    ImageRecord,
    ProblemLog,
    leaves_root,
    outside_root_message,
    parse_fields,
    read_lines,
)

METADATA_FILES = ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt")
DATASET_NAMES = ("CUB", "ILSVRC", "OpenImages")


def is_metadata_dir(path: str | Path) -> bool:
    return (Path(path) / "image_ids.txt").is_file()


def find_metadata_dirs(root: str | Path) -> list[Path]:
    """Every split folder (one holding ``image_ids.txt``) at or below ``root``, two levels deep."""
    root = Path(root)
    if is_metadata_dir(root):
        return [root]
    found = [p for p in sorted(root.glob("*")) if is_metadata_dir(p)]
    found += [p for p in sorted(root.glob("*/*")) if is_metadata_dir(p)]
    return found


def read_wsol_metadata(
    metadata_dir: str | Path,
    image_root: str | Path | None = None,
    mask_root: str | Path | None = None,
    *,
    log: ProblemLog | None = None,
    class_names: list[str] | None = None,
    allow_outside_root: bool = False,
) -> DatasetSplit:
    """Read one split folder of the wsolevaluation layout.

    Args:
        metadata_dir: e.g. ``metadata/CUB/test``.
        image_root: the folder image ids are relative to (paths are ``image_root/image_id``);
            defaults to the metadata folder, for evaluations that never open an image.
        mask_root: the folder mask paths are relative to (defaults to ``image_root``).
        log: where problems go; by default the first one raises :class:`DataFormatError`.
        class_names: names for the labels, if known.
        allow_outside_root: accept image ids and mask paths that are absolute or contain
            ``..`` (by default each is a problem naming its file and line).
    """
    meta = Path(metadata_dir)
    if not meta.is_dir():
        raise FileNotFoundError(f"metadata folder {meta} does not exist")
    log = log if log is not None else ProblemLog(strict=True)
    image_root = Path(image_root) if image_root is not None else meta
    mask_root = Path(mask_root) if mask_root is not None else image_root

    ids_path = meta / "image_ids.txt"
    ids: list[tuple[int, str]] = []
    first_line: dict[str, int] = {}
    if not ids_path.is_file():
        log.add(ids_path, None, "file is missing")
    else:
        for number, text in read_lines(ids_path):
            if text in first_line:
                log.add(
                    ids_path,
                    number,
                    f"duplicate image id {text} (first on line {first_line[text]})",
                )
                continue
            if leaves_root(text) and not allow_outside_root:
                log.add(ids_path, number, outside_root_message("image id", text))
                continue
            first_line[text] = number
            ids.append((number, text))

    labels = _keyed(meta / "class_labels.txt", [str, int], first_line, log, required=True)
    sizes = _keyed(meta / "image_sizes.txt", [str, int, int], first_line, log, required=False)
    boxes, masks, ignores = _localization(
        meta / "localization.txt", first_line, log, allow_outside_root
    )
    extra_masks, extra_ignores = {}, {}
    if (meta / "masks.txt").is_file():
        _, extra_masks, extra_ignores = _localization(
            meta / "masks.txt", first_line, log, allow_outside_root
        )
    masks = {**extra_masks, **masks}
    ignores = {**extra_ignores, **ignores}

    records = []
    for number, image_id in ids:
        if image_id not in labels:
            log.add(
                meta / "class_labels.txt",
                None,
                f"image id {image_id} (image_ids.txt:{number}) has no label",
            )
            continue
        label = labels[image_id][1][0]
        if label < 0 or (class_names and label >= len(class_names)):
            known = f" (the class list has {len(class_names)}: 0..{len(class_names) - 1})"
            log.add(
                meta / "class_labels.txt",
                labels[image_id][0],
                f"label {label} out of range{known if class_names and label >= 0 else ''}",
            )
            continue
        size = None
        if image_id in sizes:
            size_line, (w, h) = sizes[image_id]
            if w <= 0 or h <= 0:
                log.add(
                    meta / "image_sizes.txt", size_line, f"image size must be positive, not {w}x{h}"
                )
                continue
            size = (w, h)
        good_boxes = []
        for box_line, box in boxes.get(image_id, []):
            x0, y0, x1, y1 = box
            if x1 < x0 or y1 < y0:
                log.add(meta / "localization.txt", box_line, f"box {box} has x1 < x0 or y1 < y0")
                continue
            if min(box) < 0 or (size is not None and (x1 > size[0] or y1 > size[1])):
                log.add(
                    meta / "localization.txt",
                    box_line,
                    f"box {box} lies outside the image of size {size}",
                )
                continue
            good_boxes.append(tuple(float(v) for v in box))
        ignore = ignores.get(image_id)
        records.append(
            ImageRecord(
                image_id=image_id,
                path=image_root / image_id,
                label=label,
                size=size,
                boxes=tuple(good_boxes),
                mask_paths=tuple(mask_root / m for m in masks.get(image_id, [])),
                ignore_path=mask_root / ignore if ignore else None,
            )
        )
    name = meta.parent.name or "custom"
    return DatasetSplit(
        name=name,
        split=meta.name,
        records=records,
        class_names=list(class_names or []),
        root=image_root,
    )


def _keyed(
    path: Path, kinds: list[type], known: dict[str, int], log: ProblemLog, required: bool
) -> dict:
    table: dict = {}
    if not path.is_file():
        if required:
            log.add(path, None, "file is missing")
        return table
    for number, text in read_lines(path):
        values = parse_fields(path, number, text, kinds, log, sep=",")
        if values is None:
            continue
        key = values[0]
        if key not in known:
            log.add(path, number, f"image id {key} is not in image_ids.txt")
        elif key in table:
            log.add(path, number, f"duplicate image id {key} (first on line {table[key][0]})")
        else:
            table[key] = (number, values[1:])
    return table


def _localization(path: Path, known: dict[str, int], log: ProblemLog, allow_outside: bool):
    """Boxes {id: [(line, box)]}, masks {id: [mask_path]}, ignores {id: ignore_path}."""
    boxes: dict[str, list] = defaultdict(list)
    masks: dict[str, list] = defaultdict(list)
    ignores: dict[str, str] = {}
    if not path.is_file():
        return boxes, masks, ignores
    for number, text in read_lines(path):
        fields = text.split(",")
        if len(fields) == 5:
            values = parse_fields(path, number, text, [str, int, int, int, int], log, sep=",")
            if values is None:
                continue
            image_id, box = values[0], tuple(values[1:])
            if image_id not in known:
                log.add(path, number, f"image id {image_id} is not in image_ids.txt")
                continue
            boxes[image_id].append((number, box))
        elif len(fields) == 3:
            image_id, mask_path, ignore_path = (f.strip() for f in fields)
            if image_id not in known:
                log.add(path, number, f"image id {image_id} is not in image_ids.txt")
                continue
            if not mask_path:
                log.add(path, number, "empty mask path")
                continue
            outside = [m for m in (mask_path, ignore_path) if m and leaves_root(m)]
            if outside and not allow_outside:
                log.add(path, number, outside_root_message("mask path", outside[0]))
                continue
            if image_id in masks and ignore_path:
                log.add(path, number, "an image's ignore mask may be given only on its first line")
                continue
            if image_id not in masks and ignore_path:
                ignores[image_id] = ignore_path
            masks[image_id].append(mask_path)
        else:
            log.add(
                path,
                number,
                f"expected 5 fields (box) or 3 fields (mask), found {len(fields)}: {text!r}",
            )
    return boxes, masks, ignores


def write_wsol_metadata(
    split: DatasetSplit,
    out_dir: str | Path,
    image_root: str | Path,
    mask_root: str | Path | None = None,
) -> Path:
    """Write ``split`` in the wsolevaluation layout under ``out_dir`` (the split folder).

    Image ids are the record paths relative to ``image_root``; boxes are written as integers
    (rounded), as the reference reads them; masks go to ``masks.txt`` beside boxes, or to
    ``localization.txt`` when the split has masks and no boxes (the OpenImages form).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image_root = Path(image_root).resolve()
    mask_root = Path(mask_root).resolve() if mask_root is not None else image_root
    ids, labels, sizes, boxes, masks = [], [], [], [], []
    for r in split.records:
        image_id = Path(r.path).resolve().relative_to(image_root).as_posix()
        ids.append(image_id)
        labels.append(f"{image_id},{r.label}")
        if r.size is not None:
            sizes.append(f"{image_id},{r.size[0]},{r.size[1]}")
        for box in r.boxes:
            boxes.append(",".join([image_id, *(str(int(round(v))) for v in box)]))
        for i, m in enumerate(r.mask_paths):
            rel = Path(m).resolve().relative_to(mask_root).as_posix()
            ignore = ""
            if i == 0 and r.ignore_path is not None:
                ignore = Path(r.ignore_path).resolve().relative_to(mask_root).as_posix()
            masks.append(f"{image_id},{rel},{ignore}")

    def write(name: str, rows: list[str]) -> None:
        (out / name).write_text("".join(row + "\n" for row in rows), encoding="utf-8")

    write("image_ids.txt", ids)
    write("class_labels.txt", labels)
    if sizes:
        write("image_sizes.txt", sizes)
    if boxes:
        write("localization.txt", boxes)
        if masks:
            write("masks.txt", masks)
    elif masks:
        write("localization.txt", masks)
    return out


def split_train_val(
    split: DatasetSplit, per_class: int, seed: int = 0
) -> tuple[DatasetSplit, DatasetSplit]:
    """Hold out ``per_class`` images of each class as a ``val`` (train-fullsup) split.

    wsolevaluation's CUB val set is separate images (CUBV2); where those are not at hand, a
    held-out part of the training set with its boxes plays the same role: it is never trained on
    and is used only to choose hyperparameters and the CAM threshold.
    """
    by_class: dict[int, list[ImageRecord]] = defaultdict(list)
    for r in split.records:
        by_class[r.label].append(r)
    rng = random.Random(seed)
    val_ids = set()
    for label in sorted(by_class):
        members = sorted(by_class[label], key=lambda r: r.image_id)
        rng.shuffle(members)
        val_ids.update(r.image_id for r in members[:per_class])
    train = [r for r in split.records if r.image_id not in val_ids]
    val = [r for r in split.records if r.image_id in val_ids]

    def part(name: str, recs: list[ImageRecord]) -> DatasetSplit:
        return DatasetSplit(split.name, name, recs, list(split.class_names), split.root)

    return part("train", train), part("val", val)


def cap_per_class(split: DatasetSplit, per_class: int, seed: int) -> DatasetSplit:
    """``per_class`` images of each class of ``split``, chosen as wsolevaluation chooses its val
    images (``data_loaders.py``, ``WSOLImageLabelDataset._adjust_samples_per_class``, with
    ``num_val_sample_per_class``): NumPy's legacy generator seeded with the run's seed
    (``main.py``'s ``set_random_seed``, nothing drawn before), then for each label in increasing
    order ``choice(indices of that label in image_ids.txt order, per_class, replace=False)``;
    the kept images in that (label, draw) order. OpenImages' val holds 25 images per class and
    the reference keeps 5 of them.

    Raises ValueError when a class has fewer than ``per_class`` images (the reference's
    ``np.random.choice`` fails there too)."""
    import numpy as np

    labels = np.array([r.label for r in split.records])
    rng = np.random.RandomState(seed)
    kept: list[ImageRecord] = []
    short = []
    for label in np.unique(labels):
        indices = np.where(labels == label)[0]
        if len(indices) < per_class:
            short.append(f"{label} ({len(indices)})")
            continue
        kept += [split.records[i] for i in rng.choice(indices, per_class, replace=False)]
    if short:
        listed = ", ".join(short[:5]) + (" ..." if len(short) > 5 else "")
        raise ValueError(
            f"data.val_per_class {per_class}: the {split.split} split of {split.name} has fewer "
            f"images than that in {len(short)} class(es), label (images): {listed}"
        )
    return DatasetSplit(split.name, split.split, kept, list(split.class_names), split.root)


def read_proxy_ids(metadata_dir: str | Path) -> list[str]:
    """The image ids of ``image_ids_proxy.txt`` in a train split folder: wsolevaluation's
    ``proxy_training_set`` (ILSVRC: a smaller training set for the hyperparameter search;
    ``data_loaders.py``, ``get_image_ids(metadata, proxy=True)``)."""
    path = Path(metadata_dir) / "image_ids_proxy.txt"
    if not path.is_file():
        raise FileNotFoundError(
            f"data.proxy_train: {path} does not exist (wsolevaluation ships it for ILSVRC: "
            "metadata/ILSVRC/train/image_ids_proxy.txt)"
        )
    return [text for _, text in read_lines(path)]


def keep_ids(split: DatasetSplit, ids: list[str], source: Path) -> DatasetSplit:
    """The records of ``split`` whose ids are in ``ids``, in ``ids`` order; an id that is not in
    the split is an error naming the file and line."""
    by_id = split.by_id()
    missing = [(n, i) for n, i in enumerate(ids, start=1) if i not in by_id]
    if missing:
        n, image_id = missing[0]
        raise ValueError(
            f"{source}:{n}: image id {image_id} is not in the {split.split} split "
            f"({len(missing)} such ids)"
        )
    return DatasetSplit(
        split.name, split.split, [by_id[i] for i in ids], list(split.class_names), split.root
    )


def convert_cub(
    cub_root: str | Path, out_root: str | Path, val_per_class: int = 5, seed: int = 0
) -> dict[str, Path]:
    """CUB-200-2011 native -> ``out_root/CUB/{train,val,test}`` in the wsolevaluation layout
    (``out_root/SYNTH/...`` for the synthetic set).

    Image ids are relative to ``cub_root/images`` (as wsolevaluation's CUB ids are); the class
    names are written to ``out_root/CUB/class_names.txt``.
    """
    from .cub import read_cub

    cub_root = Path(cub_root)
    train_all = read_cub(cub_root, "train")
    test = read_cub(cub_root, "test")
    train, val = (
        split_train_val(train_all, val_per_class, seed) if val_per_class > 0 else (train_all, None)
    )
    out = Path(out_root) / train_all.name  # CUB (or SYNTH for the synthetic set)
    written = {}
    image_root = cub_root / "images"
    mask_root = cub_root / "segmentations"
    for part in (train, val, test):
        if part is None:
            continue
        has_masks = part.has_masks
        written[part.split] = write_wsol_metadata(
            part, out / part.split, image_root, mask_root if has_masks else None
        )
    (out / "class_names.txt").write_text(
        "".join(n + "\n" for n in train_all.class_names), encoding="utf-8"
    )
    return written


def read_class_names(metadata_dir: str | Path) -> list[str]:
    """Class names from ``class_names.txt`` beside or above the split folder, if there is one."""
    meta = Path(metadata_dir)
    for candidate in (meta / "class_names.txt", meta.parent / "class_names.txt"):
        if candidate.is_file():
            return [text for _, text in read_lines(candidate)]
    return []
