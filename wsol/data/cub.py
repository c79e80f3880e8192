"""CUB-200-2011 in its native layout.

Files read (all under the data set root)::

    classes.txt              <class_id> <class_name>          (class ids 1..K)
    images.txt               <image_id> <relative/path.jpg>   (under images/)
    image_class_labels.txt   <image_id> <class_id>
    train_test_split.txt     <image_id> <is_training_image>   (1 = train, 0 = test)
    bounding_boxes.txt       <image_id> <x> <y> <width> <height>   (floats, pixels)
    images/                  the image files
    segmentations/           optional: <relative/path>.png masks (CUB-200-2011 segmentations)

A box ``x y w h`` becomes (x, y, x + w, y + h), the conversion wsolevaluation's CUB metadata
uses (its ``localization.txt`` for CUB is exactly these sums).
"""

from __future__ import annotations

from pathlib import Path

from .records import (
    DataFormatError,
    DatasetSplit,
    ImageRecord,
    ProblemLog,
    image_size,
    leaves_root,
    outside_root_message,
    parse_fields,
    read_lines,
)

CUB_FILES = (
    "classes.txt",
    "images.txt",
    "image_class_labels.txt",
    "train_test_split.txt",
    "bounding_boxes.txt",
)
SPLITS = ("train", "test", "all")


def is_cub_root(root: str | Path) -> bool:
    return (Path(root) / "images.txt").is_file()


def _table(path: Path, kinds: list[type], log: ProblemLog, multi: bool = False) -> dict:
    """Read an id-keyed table; duplicate ids are problems unless ``multi`` (then values gather)."""
    table: dict = {}
    if not path.is_file():
        log.add(path, None, "file is missing")
        return table
    for number, text in read_lines(path):
        values = parse_fields(path, number, text, kinds, log)
        if values is None:
            continue
        key, rest = values[0], values[1:]
        if multi:
            table.setdefault(key, []).append((number, rest))
        elif key in table:
            log.add(path, number, f"duplicate id {key} (first on line {table[key][0]})")
        else:
            table[key] = (number, rest)
    return table


def read_cub(
    root: str | Path,
    split: str = "train",
    *,
    log: ProblemLog | None = None,
    read_sizes: bool = True,
    allow_outside_root: bool = False,
) -> DatasetSplit:
    """Read CUB-200-2011 from its native text files.

    Args:
        root: the folder holding ``images.txt`` and the other files.
        split: ``train``, ``test`` or ``all``.
        log: where problems go; by default the first problem raises :class:`DataFormatError`.
        read_sizes: read each image's (width, height) from its header (needed for evaluation);
            when False, ``size`` is None.
        allow_outside_root: accept image names in images.txt that are absolute or contain
            ``..`` (by default each is a problem naming its line).

    Example:
        >>> split = read_cub("data/CUB_200_2011", "test")  # doctest: +SKIP
        >>> split[0].boxes
        ((60.0, 27.0, 385.0, 331.0),)
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"CUB root {root} does not exist")
    log = log if log is not None else ProblemLog(strict=True)

    classes = _table(root / "classes.txt", [int, str], log)
    images = _table(root / "images.txt", [int, str], log)
    labels = _table(root / "image_class_labels.txt", [int, int], log)
    is_train = _table(root / "train_test_split.txt", [int, int], log)
    boxes = _table(root / "bounding_boxes.txt", [int, float, float, float, float], log, multi=True)

    class_ids = sorted(classes)
    if class_ids and class_ids != list(range(1, len(class_ids) + 1)):
        log.add(root / "classes.txt", None, "class ids must be 1..K without gaps")
    class_names = [classes[i][1][0] for i in class_ids]

    _check_ids(root, images, labels, is_train, boxes, log)

    records = []
    seen_names: dict[str, int] = {}
    seg_root = root / "segmentations"
    for image_id in sorted(images, key=lambda i: images[i][0]):
        number, (name,) = images[image_id]
        if name in seen_names:
            log.add(
                root / "images.txt",
                number,
                f"image {name} listed twice (first on line {seen_names[name]})",
            )
            continue
        seen_names[name] = number
        if leaves_root(name) and not allow_outside_root:
            log.add(root / "images.txt", number, outside_root_message("image", name))
            continue
        ok, train_flag = _label_and_split(root, image_id, labels, classes, is_train, log)
        if ok and (split == "train" and train_flag != 1 or split == "test" and train_flag != 0):
            continue
        path = root / "images" / name
        size = None
        if read_sizes:
            size = _read_size(root, path, number, log)
            ok = ok and size is not None
        record_boxes, boxes_ok = _record_boxes(root, name, boxes.get(image_id, []), size, log)
        if not (ok and boxes_ok):
            continue
        seg = seg_root / (str(Path(name).with_suffix(".png")))
        masks = (seg,) if seg.is_file() else ()
        records.append(
            ImageRecord(
                image_id=name,
                path=path,
                label=labels[image_id][1][0] - 1,
                size=size,
                boxes=tuple(record_boxes),
                mask_paths=masks,
            )
        )
    name = "SYNTH" if (root / "synth.json").is_file() else "CUB"  # the synthetic set says so
    return DatasetSplit(name=name, split=split, records=records, class_names=class_names, root=root)


def _check_ids(root: Path, images: dict, labels: dict, is_train: dict, boxes: dict, log) -> None:
    """Every id of the label, split and box files must be an image of images.txt."""
    for name, table in (("image_class_labels.txt", labels), ("train_test_split.txt", is_train)):
        for image_id, (number, _) in table.items():
            if image_id not in images:
                log.add(root / name, number, f"image id {image_id} is not in images.txt")
    for image_id, rows in boxes.items():
        if image_id not in images:
            log.add(
                root / "bounding_boxes.txt", rows[0][0], f"image id {image_id} is not in images.txt"
            )


def _label_and_split(root: Path, image_id, labels, classes, is_train, log):
    """(ok, is_training_image flag) of one image, each problem logged with its line."""
    ok = True
    if image_id not in labels:
        log.add(root / "image_class_labels.txt", None, f"image id {image_id} has no label")
        ok = False
    elif classes and labels[image_id][1][0] not in classes:
        log.add(
            root / "image_class_labels.txt",
            labels[image_id][0],
            f"class id {labels[image_id][1][0]} out of range 1..{len(classes)}",
        )
        ok = False
    if image_id not in is_train:
        log.add(root / "train_test_split.txt", None, f"image id {image_id} has no split")
        return False, None
    split_line, (train_flag,) = is_train[image_id]
    if train_flag not in (0, 1):
        log.add(
            root / "train_test_split.txt",
            split_line,
            f"is_training_image must be 0 or 1, not {train_flag}",
        )
        ok = False
    return ok, train_flag


def _read_size(root: Path, path: Path, number: int, log) -> tuple[int, int] | None:
    """The (width, height) of an image from its header, or None with the problem logged."""
    try:
        return image_size(path)
    except FileNotFoundError:
        log.add(root / "images.txt", number, f"image file {path} is missing")
    except Exception as err:  # noqa: BLE001 - PIL raises several kinds for broken files
        log.add(root / "images.txt", number, f"image file {path} is unreadable: {err}")
    return None


def _record_boxes(root: Path, name: str, rows, size, log) -> tuple[list, bool]:
    """An image's boxes ``x y w h`` as (x0, y0, x1, y1), and whether they were all valid."""
    ok, out = True, []
    for box_line, (x, y, w, h) in rows:
        if w < 0 or h < 0:
            log.add(
                root / "bounding_boxes.txt", box_line, f"negative box width or height ({w}, {h})"
            )
            ok = False
            continue
        box = (x, y, x + w, y + h)
        if size is not None and not box_inside(box, size):
            log.add(
                root / "bounding_boxes.txt",
                box_line,
                f"box {box} lies outside the {size[0]}x{size[1]} image {name}",
            )
            ok = False
        out.append(box)
    return out, ok


def box_inside(box: tuple[float, float, float, float], size: tuple[int, int]) -> bool:
    """Whether (x0, y0, x1, y1) lies inside a (width, height) image (x1 == width allowed)."""
    x0, y0, x1, y1 = box
    w, h = size
    return 0 <= x0 <= x1 <= w and 0 <= y0 <= y1 <= h


def write_cub(split: DatasetSplit, root: str | Path, train_ids: set[str]) -> None:
    """Write the CUB text files for records whose images already lie under ``root/images``.

    Used by the synthetic generator. Boxes are written as ``x y w h``.
    """
    root = Path(root)
    lines: dict[str, list[str]] = {f: [] for f in CUB_FILES}
    lines["classes.txt"] = [f"{i + 1} {name}" for i, name in enumerate(split.class_names)]
    for index, r in enumerate(split.records, start=1):
        lines["images.txt"].append(f"{index} {r.image_id}")
        lines["image_class_labels.txt"].append(f"{index} {r.label + 1}")
        lines["train_test_split.txt"].append(f"{index} {int(r.image_id in train_ids)}")
        for x0, y0, x1, y1 in r.boxes:
            lines["bounding_boxes.txt"].append(
                f"{index} {x0:.1f} {y0:.1f} {x1 - x0:.1f} {y1 - y0:.1f}"
            )
    for name, content in lines.items():
        (root / name).write_text("\n".join(content) + "\n", encoding="utf-8")


__all__ = ["read_cub", "write_cub", "is_cub_root", "box_inside", "DataFormatError", "CUB_FILES"]
