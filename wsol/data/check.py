"""``wsol data check``: find every problem in a data set without changing it."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from .cub import is_cub_root, read_cub
from .imagenet import is_imagenet_root, read_imagenet_val
from .records import DatasetSplit, Problem, ProblemLog, read_lines
from .wsolmeta import find_metadata_dirs, read_class_names, read_wsol_metadata


def detect_format(path: str | Path) -> str:
    """``cub``, ``wsol`` (metadata layout) or ``imagenet``; raises if none fits."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if is_cub_root(path):
        return "cub"
    if find_metadata_dirs(path):
        return "wsol"
    if is_imagenet_root(path):
        return "imagenet"
    raise ValueError(
        f"{path} is neither a CUB-200-2011 root (images.txt), a wsolevaluation metadata folder "
        "(image_ids.txt) nor an ImageNet root (train/ and val/)"
    )


def check_dataset(
    path: str | Path,
    *,
    images: str | Path | None = None,
    masks: str | Path | None = None,
    annotations: str | Path | None = None,
    deep: bool = False,
    progress: bool = True,
    allow_outside_root: bool = False,
) -> tuple[list[Problem], list[DatasetSplit]]:
    """Check a data set and return (problems, the splits that could be read).

    Problems reported: malformed lines, missing or unreadable image and mask files, duplicate
    ids, labels out of range, boxes outside the image or with x1 < x0 / y1 < y0, and sizes in
    the metadata that differ from the image files. Nothing is modified.

    Args:
        path: a CUB root, a wsolevaluation metadata folder (a split or a parent of splits) or an
            ImageNet root.
        images: image root for the metadata layout (image ids are relative to it).
        masks: mask root for the metadata layout (default: ``images``).
        annotations: ImageNet val boxes (XML folder or LOC_val_solution.csv).
        deep: decode every image fully instead of reading its header.
    """
    fmt = detect_format(path)
    log = ProblemLog(strict=False)
    path = Path(path)
    # (split, {image_id: (listing file, line)}) for the image checks below
    todo: list[tuple[DatasetSplit, dict]] = []
    if fmt == "cub":
        # the reader itself reports missing/unreadable images and boxes outside them, by line
        split = read_cub(
            path, "all", log=log, read_sizes=True, allow_outside_root=allow_outside_root
        )
        train_ids = {
            r.image_id
            for r in read_cub(
                path, "train", log=ProblemLog(strict=False), read_sizes=False,
                allow_outside_root=allow_outside_root,
            ).records
        }  # fmt: skip
        for name, keep in (("train", True), ("test", False)):
            records = [r for r in split.records if (r.image_id in train_ids) == keep]
            part = DatasetSplit(split.name, name, records, split.class_names, split.root)
            todo.append((part, {}))
    elif fmt == "wsol":
        for meta in find_metadata_dirs(path):
            split = read_wsol_metadata(
                meta,
                images,
                masks,
                log=log,
                allow_outside_root=allow_outside_root,
                class_names=read_class_names(meta) or None,  # labels beyond the list: problems
            )
            lines = {
                text: (meta / "image_ids.txt", n) for n, text in read_lines(meta / "image_ids.txt")
            }
            todo.append((split, lines))
    else:
        if annotations is None:
            for candidate in (
                path / "LOC_val_solution.csv",
                path / "val_annotations",
                path / "Annotations",
            ):
                if candidate.exists():
                    annotations = candidate
                    break
        if annotations is None:
            log.add(
                path,
                None,
                "no val annotations found; pass --annotations (XML folder or LOC_val_solution.csv)",
            )
        else:
            todo.append((read_imagenet_val(path, annotations, log=log, read_sizes=True), {}))
    for split, lines in todo:
        if not split.records:
            log.add(path, None, f"the {split.split or 'data'} split lists no image")
        _check_complete(split, lines, log, boxes_expected=fmt == "cub" or split.has_boxes)
        if split.split == "train":
            _check_every_class_trains(split, path, log)
    open_images = fmt in ("imagenet", "cub") or (fmt == "wsol" and images is not None) or deep
    open_masks = fmt != "wsol" or masks is not None or images is not None
    total = sum(len(s) for s, _ in todo)
    with tqdm(total=total, desc="check", unit="img", disable=not progress) as bar:
        for split, lines in todo:
            for r in split.records:
                bar.update()
                where = lines.get(r.image_id, (r.path, None))
                if open_images:
                    _check_image(r, log, deep, where)
                if open_masks:
                    for m in r.mask_paths + ((r.ignore_path,) if r.ignore_path else ()):
                        if not Path(m).is_file():
                            log.add(where[0], where[1], f"mask file {m} of {r.image_id} is missing")
    return log.problems, [s for s, _ in todo]


def _check_complete(split: DatasetSplit, lines: dict, log: ProblemLog, boxes_expected: bool):
    """Every image of a box data set needs a box and a size (the evaluation scales boxes by
    it), and every image of a mask data set a mask (a missing localization line would leave it
    out of PxAP, or fail the evaluation); an image without them is a problem, not a silent
    gap. (OpenImages has no image_sizes.txt: its masks carry their own size.)"""
    masks_expected = split.has_masks
    for r in split.records:
        where = lines.get(r.image_id, (r.path, None))
        if boxes_expected and not r.boxes:
            extra = " although it has a mask" if r.mask_paths else ""
            log.add(*where, f"{r.image_id} has no box (no line in the box file){extra}")
        if masks_expected and not r.mask_paths:
            log.add(*where, f"{r.image_id} has no mask (no mask line in the localization file)")
        if r.boxes and r.size is None:
            log.add(*where, f"{r.image_id} has no size (no line in image_sizes.txt)")


def _check_every_class_trains(split: DatasetSplit, path: Path, log: ProblemLog) -> None:
    """Every class of a training split has at least one image: a class without one would be a
    classifier output that never learns (training and evaluation would run without a word)."""
    present = {r.label for r in split.records}
    known = len(split.class_names) if split.class_names else split.num_classes
    missing = [c for c in range(known) if c not in present]
    if missing:
        named = [
            f"{c} ({split.class_names[c]})" if c < len(split.class_names) else str(c)
            for c in missing[:5]
        ]
        log.add(
            path,
            None,
            f"{len(missing)} class(es) of {known} have no training image: "
            f"{', '.join(named)}{' ...' if len(missing) > 5 else ''}",
        )


#: how a complete file of each kind ends: a truncated one is found without decoding it
_ENDINGS = {".jpg": b"\xff\xd9", ".jpeg": b"\xff\xd9", ".png": b"IEND\xaeB`\x82"}


def file_is_cut_short(path: Path) -> bool:
    """True when a JPEG or PNG file does not end as every complete one does (its end-of-image
    marker, IEND chunk): the cheap test of the default check (``--deep`` decodes everything).
    Trailing zero bytes or newlines after the marker are tolerated."""
    ending = _ENDINGS.get(Path(path).suffix.lower())
    if ending is None:
        return False
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 64))
        tail = f.read().rstrip(b"\x00\r\n ")
    return not tail.endswith(ending)


def _check_image(record, log: ProblemLog, deep: bool, where: tuple) -> None:
    from PIL import Image

    try:
        with Image.open(record.path) as im:
            size = im.size
            mode = im.mode
            if deep:
                im.load()
    except FileNotFoundError:
        log.add(*where, f"image file {record.path} is missing")
        return
    except Exception as err:  # noqa: BLE001 - PIL raises several kinds for broken files
        log.add(*where, f"image file {record.path} is unreadable: {err}")
        return
    if mode in ("F", "I;16F") or mode.startswith("F;"):
        log.add(
            *where,
            f"image file {record.path} holds floating-point pixels (mode {mode}), which training "
            "refuses: save it as an 8- or 16-bit image",
        )
        return
    if not deep and file_is_cut_short(record.path):
        log.add(
            *where,
            f"image file {record.path} is cut short (it does not end as a complete "
            f"{Path(record.path).suffix.lstrip('.').upper()} file does)",
        )
        return
    if record.size is not None and tuple(record.size) != tuple(size):
        log.add(
            *where,
            f"{record.image_id}: metadata size {record.size[0]}x{record.size[1]} differs from the file's {size[0]}x{size[1]}",
        )
        return
    for box in record.boxes:
        x0, y0, x1, y1 = box
        if x1 > size[0] or y1 > size[1]:
            log.add(
                *where, f"{record.image_id}: box {box} lies outside the {size[0]}x{size[1]} image"
            )
