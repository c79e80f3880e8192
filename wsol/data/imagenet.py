"""ImageNet (ILSVRC 2012) as distributed: train folders by wnid, val boxes in XML or CSV.

Layout::

    ROOT/train/<wnid>/<wnid>_<n>.JPEG
    ROOT/val/ILSVRC2012_val_<n>.JPEG
    val boxes:  a folder of ILSVRC XML files (ILSVRC2012_val_<n>.xml, "PASCAL VOC" form) or
                LOC_val_solution.csv ("ImageId,PredictionString" with "wnid x0 y0 x1 y1 ..." groups)

Class indices are the wnids sorted (torchvision's ImageFolder order), taken from ``ROOT/train``,
from ``LOC_synset_mapping.txt`` or given explicitly. Image ids are paths relative to ROOT
(``train/n01440764/n01440764_10026.JPEG``, ``val/ILSVRC2012_val_00000001.JPEG``), as
wsolevaluation's ILSVRC metadata has them.
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from pathlib import Path

from .records import DatasetSplit, ImageRecord, ProblemLog, image_size, read_lines

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


def read_wnids(
    root: str | Path | None = None, synset_mapping: str | Path | None = None
) -> list[str]:
    """Sorted wnids from ``LOC_synset_mapping.txt`` ("wnid words...") or the train folders."""
    if synset_mapping is not None:
        return [text.split()[0] for _, text in read_lines(Path(synset_mapping))]
    train = Path(root) / "train"
    if not train.is_dir():
        raise FileNotFoundError(
            f"{train} does not exist; give the wnids with LOC_synset_mapping.txt"
        )
    return sorted(p.name for p in train.iterdir() if p.is_dir())


def read_imagenet_train(root: str | Path, wnids: list[str] | None = None) -> DatasetSplit:
    """Training images from ``ROOT/train/<wnid>/``; no boxes, sizes left unread (None)."""
    root = Path(root)
    wnids = wnids or read_wnids(root)
    index = {w: i for i, w in enumerate(wnids)}
    records = []
    for wnid in wnids:
        folder = root / "train" / wnid
        if not folder.is_dir():
            raise FileNotFoundError(f"class folder {folder} does not exist")
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                records.append(
                    ImageRecord(
                        image_id=path.relative_to(root).as_posix(),
                        path=path,
                        label=index[wnid],
                        size=None,
                    )
                )
    return DatasetSplit("ILSVRC", "train", records, list(wnids), root)


def parse_ilsvrc_xml(path: Path, log: ProblemLog):
    """(filename, (width, height), [(wnid, (x0, y0, x1, y1))]) from one ILSVRC XML file."""
    try:
        tree = ET.parse(path)
    except ET.ParseError as err:
        line = err.position[0] if err.position else None
        log.add(path, line, f"malformed XML: {err}")
        return None
    ann = tree.getroot()
    try:
        filename = ann.findtext("filename", "").strip() or path.stem
        size = ann.find("size")
        wh = (
            (int(size.findtext("width")), int(size.findtext("height")))
            if size is not None
            else None
        )
        objects = []
        for obj in ann.iter("object"):
            box = obj.find("bndbox")
            coords = tuple(float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            objects.append((obj.findtext("name").strip(), coords))
    except (AttributeError, TypeError, ValueError) as err:
        log.add(path, None, f"missing or malformed field: {err}")
        return None
    return filename, wh, objects


def read_loc_solution(path: Path, log: ProblemLog) -> dict[str, list[tuple[int, str, tuple]]]:
    """{image name: [(line, wnid, box)]} from ``LOC_val_solution.csv``."""
    out: dict[str, list] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
            log.add(path, 1, "expected the header 'ImageId,PredictionString'")
            return out
        for number, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 2:
                log.add(path, number, f"expected 2 columns, found {len(row)}")
                continue
            name, pred = row[0].strip(), row[1].split()
            if len(pred) % 5 or not pred:
                log.add(path, number, "PredictionString must hold groups of 'wnid x0 y0 x1 y1'")
                continue
            try:
                groups = [
                    (number, pred[i], tuple(float(v) for v in pred[i + 1 : i + 5]))
                    for i in range(0, len(pred), 5)
                ]
            except ValueError as err:
                log.add(path, number, f"bad box coordinate: {err}")
                continue
            if name in out:
                log.add(path, number, f"duplicate image id {name}")
                continue
            out[name] = groups
    return out


def read_imagenet_val(
    root: str | Path,
    annotations: str | Path,
    wnids: list[str] | None = None,
    *,
    log: ProblemLog | None = None,
    read_sizes: bool = True,
) -> DatasetSplit:
    """Validation images with their boxes.

    Args:
        root: ImageNet root holding ``val/`` (and ``train/`` if ``wnids`` is not given).
        annotations: a folder of ILSVRC XML files or the ``LOC_val_solution.csv`` file.
        wnids: class order; default: sorted train folders.
        log: where problems go; by default the first raises :class:`DataFormatError`.
        read_sizes: for the CSV form, read sizes from image headers (XML has them).
    """
    root = Path(root)
    log = log if log is not None else ProblemLog(strict=True)
    wnids = wnids or read_wnids(root)
    index = {w: i for i, w in enumerate(wnids)}
    annotations = Path(annotations)
    entries = []  # (name, size, [(line, wnid, box)], source path)
    if annotations.is_dir():
        for xml in sorted(annotations.glob("*.xml")):
            parsed = parse_ilsvrc_xml(xml, log)
            if parsed is None:
                continue
            filename, wh, objects = parsed
            entries.append((filename, wh, [(None, w, b) for w, b in objects], xml))
    elif annotations.is_file():
        for name, groups in read_loc_solution(annotations, log).items():
            entries.append((name, None, groups, annotations))
    else:
        raise FileNotFoundError(f"annotations {annotations} do not exist")

    records = []
    for name, wh, objects, source in sorted(entries, key=lambda e: e[0]):
        candidates = (
            [root / "val" / name] if Path(name).suffix else [root / "val" / (name + ".JPEG")]
        )
        path = candidates[0]
        if not objects:
            log.add(source, None, f"{name}: no object")
            continue
        wnid = objects[0][1]
        if wnid not in index:
            log.add(source, objects[0][0], f"{name}: unknown wnid {wnid}")
            continue
        if wh is None and read_sizes:
            try:
                wh = image_size(path)
            except Exception as err:  # noqa: BLE001 - PIL raises several kinds
                log.add(source, objects[0][0], f"cannot read image {path}: {err}")
                continue
        boxes = []
        for line, obj_wnid, box in objects:
            x0, y0, x1, y1 = box
            if (
                x1 < x0
                or y1 < y0
                or min(box) < 0
                or (wh is not None and (x1 > wh[0] or y1 > wh[1]))
            ):
                log.add(
                    source, line, f"{name}: box {box} is inverted or outside the image of size {wh}"
                )
                continue
            if obj_wnid == wnid:  # every object of an ILSVRC val image has the image's class
                boxes.append(box)
        records.append(
            ImageRecord(
                image_id=path.relative_to(root).as_posix(),
                path=path,
                label=index[wnid],
                size=wh,
                boxes=tuple(boxes),
            )
        )
    return DatasetSplit("ILSVRC", "val", records, list(wnids), root)


def is_imagenet_root(root: str | Path) -> bool:
    root = Path(root)
    return (root / "train").is_dir() and (root / "val").is_dir()
