"""Torch datasets over :class:`DatasetSplit` records, with the reference's transforms.

Train: resize to ``resize_size`` x ``resize_size``, random crop ``crop_size``, horizontal flip,
normalise with ImageNet statistics. Val/test: resize straight to ``crop_size`` x ``crop_size``
(no crop, so CAMs and boxes share the image's frame), as wsolevaluation does; a protocol with a
centre crop (SAT's) resizes to ``resize_size`` and crops the centre instead. Resizing, cropping
and flipping act on the PIL image before it becomes a tensor, as in the reference's
``data_loaders.py`` (PIL's bilinear resize), so the pixels match its pipeline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .records import DatasetSplit

if TYPE_CHECKING:
    from torchvision.transforms import v2

# torchvision is imported where a transform is made, not with this module: importing it costs
# about 1.5 s (it imports torch._dynamo), which commands that only read configs and results
# (wsol compare, the parent process of wsol sweep) need not pay

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def batches_of(loader):
    """The batches of a DataLoader, whose worker processes stop when the loop ends, whether it
    ends by an error, a ``break`` or running out. (An error raised through a DataLoader's
    iterator keeps the iterator in the traceback, and its idle workers alive, until a garbage
    collection, which then waits out the workers' 5-second status interval.)"""
    iterator = iter(loader)
    try:
        yield from iterator
    finally:
        stop = getattr(iterator, "_shutdown_workers", None)  # worker processes only
        if stop is not None:
            stop()


def to_unit_float(image: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [0, 1] as ``transforms.ToTensor`` computes it (a division by 255,
    not a multiplication by 1/255, so the values equal the reference's to the bit)."""
    return image.to(torch.float32).div(255)


def train_transform(resize_size: int, crop_size: int) -> v2.Compose:
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.Resize((resize_size, resize_size), antialias=True),
            v2.RandomCrop(crop_size),
            v2.RandomHorizontalFlip(),
            v2.ToImage(),
            v2.Lambda(to_unit_float),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def eval_transform(crop_size: int, resize_size: int | None = None, crop: bool = True) -> v2.Compose:
    """Val/test images: resized straight to ``crop_size`` (wsolevaluation's); with
    ``resize_size``, resized to that square and centre-cropped to ``crop_size`` (SAT's test
    loaders), or, with ``crop=False``, left whole at ``resize_size`` for crops taken later
    (:func:`center_and_ten_crops`)."""
    from torchvision.transforms import v2

    steps = [v2.Resize((crop_size, crop_size), antialias=True)]
    if resize_size is not None:
        steps = [v2.Resize((resize_size, resize_size), antialias=True)]
        if crop:
            steps.append(v2.CenterCrop(crop_size))
    return v2.Compose(
        [*steps, v2.ToImage(), v2.Lambda(to_unit_float), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )


def center_and_ten_crops(images: torch.Tensor, crop_size: int):
    """(centre crop (B, 3, c, c), the ten crops (10, B, 3, c, c)) of a batch of resized,
    normalised images: torchvision's ``TenCrop`` (the four corners and the centre, then the
    same of the horizontally flipped image). Normalising commutes with cropping and flipping,
    so these equal the crops of SAT's test loader, which normalises each crop."""
    from torchvision.transforms import v2

    crops = v2.functional.ten_crop(images, [crop_size, crop_size])
    return v2.functional.center_crop(images, [crop_size, crop_size]), torch.stack(crops)


def to_rgb(image: Image.Image) -> Image.Image:
    """An RGB image from any PIL image. 16- and 32-bit integer images (16-bit PNGs open as
    ``I;16`` or ``I``) are scaled to 8 bits first: PIL's own ``convert("RGB")`` clips them,
    which turns almost every pixel white."""
    if image.mode.startswith("I;16") or image.mode == "I":
        bits = 16 if image.mode.startswith("I;16") or np.asarray(image).max() < 65536 else 32
        values = np.asarray(image, dtype=np.float64) / (2**bits - 1) * 255.0
        image = Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8), mode="L")
    elif image.mode == "F":
        raise ValueError("floating-point images are not supported; save it as 8- or 16-bit")
    return image.convert("RGB")


class ImageReadError(RuntimeError, ValueError):
    """An image file could not be read; the message names the file."""


class ImageSizeError(ValueError):
    """An image whose file size disagrees with its recorded size."""


class RecordDataset(Dataset):
    """(image tensor, label, index) for each record; ``skip_bad`` yields None for unreadable
    images instead of raising (see :func:`collate_skipping`)."""

    def __init__(
        self, split: DatasetSplit, transform, skip_bad: bool = False, check_size: bool = False
    ):
        self.split = split
        self.transform = transform
        self.skip_bad = skip_bad
        self.check_size = check_size  # evaluation: boxes are scaled by the recorded size

    def __len__(self) -> int:
        return len(self.split)

    def _read(self, record) -> Image.Image | None:
        """The record's image as RGB (None if unreadable and ``skip_bad``)."""
        try:
            with Image.open(record.path) as im:
                return to_rgb(im)
        except Exception as err:  # noqa: BLE001 - PIL raises many kinds for broken files
            if self.skip_bad:
                return None
            raise ImageReadError(
                f"cannot read image {record.path} ({record.image_id}): {err}; "
                "--skip-bad-images (data.skip_bad_images=true) skips unreadable images"
            ) from err

    def __getitem__(self, index: int):
        record = self.split.records[index]
        image = self._read(record)
        if image is None:
            return None
        if self.check_size and record.size is not None and tuple(record.size) != image.size:
            w, h = record.size
            raise ImageSizeError(
                f"image {record.path} ({record.image_id}) is {image.size[0]}x{image.size[1]}, "
                f"but its metadata says {w}x{h}: its boxes would be scaled wrongly. `wsol data "
                "check --data ROOT` lists every such image; `wsol evaluate --fix-sizes` evaluates "
                "with the files' sizes and says how many it corrected"
            )
        return self.transform(image), record.label, index


#: target value of a pixel that a localization target leaves out (OpenImages' ignore regions)
IGNORE = 255


def localization_target(record, size: tuple[int, int], source: str = "auto") -> np.ndarray:
    """(H, W) uint8 foreground target of ``record`` at ``size`` = (W, H), the image's own size:
    1 inside the object, 0 outside, ``IGNORE`` in its ignore region minus the object.

    ``source``: ``boxes`` (every box filled in, inclusive pixel corners as the reference's
    boxes), ``masks`` (the union of the instance masks, read as the evaluator reads them: any
    non-zero grey value, nearest-resized to the image) or ``auto`` (boxes when the record has
    any, else masks)."""
    w, h = size
    if source == "auto":
        source = "boxes" if record.boxes else "masks"
    out = np.zeros((h, w), dtype=np.uint8)
    if source == "boxes":
        if not record.boxes:
            raise ValueError(f"image {record.image_id} has no box to make a training target of")
        for x0, y0, x1, y1 in record.boxes:
            c0, r0 = max(0, int(round(x0))), max(0, int(round(y0)))
            out[r0 : int(round(y1)) + 1, c0 : int(round(x1)) + 1] = 1
        return out
    if source != "masks":
        raise ValueError(f"source must be auto, boxes or masks, not {source!r}")
    if not record.mask_paths:
        raise ValueError(f"image {record.image_id} has no mask to make a training target of")

    def read(path) -> np.ndarray:
        with Image.open(path) as im:
            grey = im.convert("L")
            if grey.size != (w, h):
                grey = grey.resize((w, h), Image.NEAREST)
            return np.asarray(grey) > 0

    fg = np.zeros((h, w), dtype=bool)
    for path in record.mask_paths:
        fg |= read(path)
    out[fg] = 1
    if record.ignore_path is not None:
        out[read(record.ignore_path) & ~fg] = IGNORE
    return out


class LocalizationDataset(RecordDataset):
    """(image tensor, (H, W) uint8 localization target, index) for each record: the training
    data of the FSL baseline. The image goes through the training transform's steps (resize,
    random crop, flip: the same pixels as :func:`train_transform`), the target through the same
    geometry (nearest resize)."""

    def __init__(
        self,
        split: DatasetSplit,
        resize_size: int,
        crop_size: int,
        source: str = "auto",
        skip_bad: bool = False,
    ):
        from torchvision.transforms import v2

        super().__init__(split, None, skip_bad)
        self.source = source
        self.geometry = v2.Compose(
            [
                v2.Resize((resize_size, resize_size), antialias=True),
                v2.RandomCrop(crop_size),
                v2.RandomHorizontalFlip(),
            ]
        )
        self.finish = v2.Compose(
            [v2.ToImage(), v2.Lambda(to_unit_float), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        )

    def __getitem__(self, index: int):
        record = self.split.records[index]
        image = self._read(record)
        if image is None:
            return None
        from torchvision import tv_tensors

        target = tv_tensors.Mask(
            torch.from_numpy(localization_target(record, image.size, self.source))
        )
        image, target = self.geometry(image, target)
        return self.finish(image), target.as_subclass(torch.Tensor), index


class EncodedDataset(RecordDataset):
    """(the image file's bytes as a uint8 tensor, label, index): the training data of
    ``data.decode: device``, whose images are decoded and augmented on the training device in
    the main process (:class:`DeviceAugment`), not by the loader's workers."""

    def __getitem__(self, index: int):
        from torchvision.io import read_file

        record = self.split.records[index]
        try:
            data = read_file(str(record.path))
        except Exception as err:  # noqa: BLE001
            if self.skip_bad:
                return None
            raise ImageReadError(
                f"cannot read image {record.path} ({record.image_id}): {err}"
            ) from err
        return data, record.label, index


class DeviceAugment:
    """The training transform of :func:`train_transform` on a batch of encoded images, on
    ``device``: decode (``torchvision.io.decode_jpeg`` on the device for JPEG files, the CPU for
    others), convert to RGB, resize to ``resize_size`` x ``resize_size`` (bilinear,
    antialiased), a random ``crop_size`` crop and a horizontal flip with probability 0.5 per
    image (the same draws, in the same order, from torch's generator as the CPU path: crop
    offsets, then the flip), divide by 255 and normalise. Tensor resizing is not PIL's to the
    bit (their antialiasing filters differ slightly): the augmentation is the same, the pixels
    close (tests/test_device_decode.py)."""

    def __init__(self, resize_size: int, crop_size: int, device):
        self.resize, self.crop, self.device = resize_size, crop_size, torch.device(device)
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(3, 1, 1)

    def decode(self, data: list[torch.Tensor]) -> list[torch.Tensor]:
        from torchvision.io import ImageReadMode, decode_image, decode_jpeg

        is_jpeg = [len(d) > 2 and int(d[0]) == 0xFF and int(d[1]) == 0xD8 for d in data]
        out: list = [None] * len(data)
        jpegs = [k for k, j in enumerate(is_jpeg) if j]
        if jpegs:
            device = self.device if self.device.type == "cuda" else "cpu"
            decoded = decode_jpeg([data[k] for k in jpegs], mode=ImageReadMode.RGB, device=device)
            for k, image in zip(jpegs, decoded):
                out[k] = image
        for k, j in enumerate(is_jpeg):
            if not j:
                out[k] = decode_image(data[k], mode=ImageReadMode.RGB)
        return [image.to(self.device) for image in out]

    def decode_named(self, data: list[torch.Tensor], names: list[str]) -> list[torch.Tensor]:
        """:meth:`decode`, a file that cannot be decoded named in the error."""
        try:
            return self.decode(data)
        except Exception:  # noqa: BLE001
            for item, name in zip(data, names):  # one by one: which file is it?
                try:
                    self.decode([item])
                except Exception as err:  # noqa: BLE001
                    raise ImageReadError(f"cannot decode image {name}: {err}") from err
            raise

    def __call__(self, data: list[torch.Tensor], names: list[str] | None = None) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as TF

        images = []
        names = names or [f"#{k} of the batch" for k in range(len(data))]
        for image in self.decode_named(data, names):
            image = TF.resize(image, [self.resize, self.resize], antialias=True)
            # v2.RandomCrop's draws, in its order: the top offset, then the left one
            h, w = image.shape[-2:]
            top = int(torch.randint(0, h - self.crop + 1, size=()))
            left = int(torch.randint(0, w - self.crop + 1, size=()))
            image = TF.crop(image, top, left, self.crop, self.crop)
            if torch.rand(1) < 0.5:  # v2.RandomHorizontalFlip: flipped when rand < p
                image = TF.horizontal_flip(image)
            images.append(image)
        batch = torch.stack(images).to(torch.float32).div(255)
        return (batch - self.mean) / self.std


def collate_skipping(batch):
    """Default collation after dropping skipped (None) samples; returns (images, labels or
    stacked localization targets, indices, number skipped)."""
    kept = [b for b in batch if b is not None]
    skipped = len(batch) - len(kept)
    if not kept:
        return None, None, None, skipped
    if kept[0][0].dim() == 1:  # encoded files (EncodedDataset): decoded later, on the device
        images = [b[0] for b in kept]
    else:
        images = torch.stack([b[0] for b in kept])
    if isinstance(kept[0][1], torch.Tensor):
        labels = torch.stack([b[1] for b in kept])
    else:
        labels = torch.tensor([b[1] for b in kept], dtype=torch.long)
    indices = torch.tensor([b[2] for b in kept], dtype=torch.long)
    return images, labels, indices, skipped
