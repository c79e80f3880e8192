"""The one in-memory record type that every reader produces, and the error readers raise."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

Box = tuple[float, float, float, float]
"""A box as (x0, y0, x1, y1) in original-image pixels."""


class DataFormatError(ValueError):
    """A data file is malformed; the message names the file and the (1-based) line."""

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Problem:
    """One problem found in a data set: a file, a 1-based line (or None) and what is wrong."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.message}"


class ProblemLog:
    """Collects problems (``strict=False``) or raises the first one (``strict=True``)."""

    def __init__(self, strict: bool = True):
        self.strict = strict
        self.problems: list[Problem] = []

    def add(self, path: str | Path, line: int | None, message: str) -> None:
        if self.strict:
            raise DataFormatError(path, line, message)
        self.problems.append(Problem(str(path), line, message))

    def __bool__(self) -> bool:
        return bool(self.problems)


@dataclass(frozen=True)
class ImageRecord:
    """One image of a data set, as every reader produces it.

    Attributes:
        image_id: unique id; for CUB and the wsolevaluation layout, the image path relative to
            the image root (e.g. ``001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg``).
        path: the image file.
        label: 0-based class index.
        size: original (width, height) in pixels.
        boxes: ground-truth boxes (x0, y0, x1, y1) in original pixels; may be empty (training
            images of some sets, OpenImages which has masks instead).
        mask_paths: instance mask files (any nonzero pixel is foreground, as the reference reads them).
        ignore_path: optional ignore-region mask (OpenImages).
    """

    image_id: str
    path: Path
    label: int
    size: tuple[int, int]
    boxes: tuple[Box, ...] = ()
    mask_paths: tuple[Path, ...] = ()
    ignore_path: Path | None = None


@dataclass
class DatasetSplit:
    """A split of a data set: its records in file order and its class names."""

    name: str
    split: str
    records: list[ImageRecord]
    class_names: list[str] = field(default_factory=list)
    root: Path | None = None

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self.records)

    def __getitem__(self, index: int) -> ImageRecord:
        return self.records[index]

    @property
    def num_classes(self) -> int:
        if self.class_names:
            return len(self.class_names)
        return max((r.label for r in self.records), default=-1) + 1

    def by_id(self) -> dict[str, ImageRecord]:
        return {r.image_id: r for r in self.records}

    @property
    def has_boxes(self) -> bool:
        return any(r.boxes for r in self.records)

    @property
    def has_masks(self) -> bool:
        return any(r.mask_paths for r in self.records)


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, stripped text) for the non-blank lines of a text file."""
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, start=1):
            text = raw.strip()
            if text:
                yield number, text


def parse_fields(
    path: Path,
    number: int,
    text: str,
    kinds: Sequence[type],
    log: ProblemLog,
    sep: str | None = None,
) -> list | None:
    """Split one line into fields and convert each with ``kinds``; log and return None on error."""
    parts = text.split(sep) if sep is not None else text.split()
    if kinds and kinds[-1] is str and len(parts) > len(kinds):
        # a free-text last field (a class name, a path) may hold the separator
        parts = (
            text.split(sep, len(kinds) - 1) if sep is not None else text.split(None, len(kinds) - 1)
        )
    if len(parts) != len(kinds):
        log.add(path, number, f"expected {len(kinds)} fields, found {len(parts)}: {text!r}")
        return None
    values = []
    for part, kind in zip(parts, kinds):
        part = part.strip()
        try:
            values.append(kind(part))
        except ValueError:
            log.add(path, number, f"cannot read {part!r} as {kind.__name__}: {text!r}")
            return None
    return values


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, reading only its header."""
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def correct_sizes(split: DatasetSplit) -> tuple[DatasetSplit, list[str]]:
    """``split`` with every recorded image size replaced by its file's (headers only), and the
    ids whose size the metadata had wrong: what ``wsol evaluate --fix-sizes`` uses, so that the
    boxes are scaled by the true size (and it says how many it corrected)."""
    import dataclasses

    fixed, changed = [], []
    for r in split.records:
        if r.size is not None:
            true = image_size(r.path)
            if tuple(r.size) != tuple(true):
                changed.append(r.image_id)
                r = dataclasses.replace(r, size=true)
        fixed.append(r)
    return DatasetSplit(
        split.name, split.split, fixed, list(split.class_names), split.root
    ), changed


def unique_ids(records: Iterable[ImageRecord]) -> bool:
    seen: set[str] = set()
    for r in records:
        if r.image_id in seen:
            return False
        seen.add(r.image_id)
    return True


def leaves_root(relative: str) -> bool:
    """True for a path that is not inside its root: absolute (``/x``, ``C:/x``, ``//host/x``)
    or climbing out with ``..``. Image ids and mask paths are relative to their root."""
    from pathlib import PurePosixPath

    text = relative.replace("\\", "/")
    parts = PurePosixPath(text).parts
    return text.startswith("/") or (len(text) > 1 and text[1] == ":") or ".." in parts


def outside_root_message(kind: str, relative: str) -> str:
    return (
        f"{kind} {relative} leaves its root (an absolute path or '..'): refused; pass "
        "allow_outside_root (data.allow_outside_root, --allow-outside-root) to read it anyway"
    )
