"""What a training run records besides log.csv: ``train.log`` (every line ``wsol train``
printed) and TensorBoard events in ``RUN/tensorboard`` (per epoch: train loss, accuracy, learning
rate, images per second; val classification and localization metrics; CAM overlays of a fixed
set of val images at every evaluation).

    tensorboard --logdir runs/          # every run folder under runs/, side by side
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

#: log.csv columns and their TensorBoard tags
SCALARS = {
    "train_loss": "train/loss",
    "train_acc": "train/accuracy",
    "lr": "train/lr",
    "images_per_s": "train/images_per_s",
    "val_top1_acc": "val/top1_acc",
    "val_MaxBoxAcc": "val/MaxBoxAcc",
    "val_MaxBoxAccV2": "val/MaxBoxAccV2",
    "val_PxAP": "val/PxAP",
}
OVERLAY_IMAGES = 8  # val images whose CAMs are drawn at every evaluation


def duration(seconds: float) -> str:
    """``1h02m``, ``4m10s`` or ``9s``."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class RunLog:
    """train.log and TensorBoard of one run; only the main process writes (``enabled``)."""

    def __init__(self, folder: str | Path, enabled: bool, echo: bool, tensorboard: bool):
        self.folder = Path(folder)
        self.enabled, self.echo = enabled, echo
        self.writer = None
        self._epoch_seconds: list[float] = []
        if enabled:  # a log that cannot be written fails now, with its name, not mid-run
            import errno
            import os

            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.folder / "train.log", "a", encoding="utf-8"):
                pass
            board = self.folder / "tensorboard"
            if tensorboard and board.exists() and not os.access(board, os.W_OK):
                raise PermissionError(errno.EACCES, "permission denied", str(board))
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.folder / "tensorboard"))

    def line(self, text: str) -> None:
        """Print a line (unless quiet of lines) and append it to train.log."""
        if not self.enabled:
            return
        if self.echo:
            tqdm.write(text)
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "train.log", "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")

    def eta(self, seconds: float, epoch: int, epochs: int) -> str:
        """The time left for the whole run, from the mean epoch time so far."""
        self._epoch_seconds.append(seconds)
        left = epochs - epoch
        return duration(left * float(np.mean(self._epoch_seconds[-5:])))

    def scalars(self, row: dict) -> None:
        if self.writer is None:
            return
        for column, tag in SCALARS.items():
            value = row.get(column, "")
            if value != "" and value is not None and math.isfinite(float(value)):
                self.writer.add_scalar(tag, float(value), int(row["epoch"]))
        self.writer.flush()

    def overlays(
        self, epoch: int, images: torch.Tensor, cams: torch.Tensor, boxes=None, threshold=None
    ) -> None:
        """CAM overlays of the fixed val images, one grid per epoch: at least 224 px a tile,
        with their GT boxes and the predicted box at ``threshold`` (see :func:`overlay_grid`)."""
        if self.writer is None:
            return
        grid = overlay_grid(images, cams, boxes, threshold)
        self.writer.add_image("val/cam_overlays", grid, epoch)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


#: the smallest side of a TensorBoard overlay tile, in pixels (tiles are upscaled to it)
OVERLAY_SIDE = 224


def overlay_grid(
    images: torch.Tensor, cams: torch.Tensor, boxes=None, threshold: float | None = None
) -> torch.Tensor:
    """(3, H, W) grid of ``images`` (B, 3, h, w, normalised as the model reads them) with their
    ``cams`` (B, h', w') min-max normalised, upsampled and drawn in viridis, each tile upscaled
    to at least ``OVERLAY_SIDE`` pixels so it can be read; ``boxes`` (one (G, 4) array per image,
    in the images' pixels) drawn white, and the predicted box at ``threshold`` (the box of the
    largest component, as the reference's) in vermillion."""
    import math

    import cv2
    import matplotlib
    from torchvision.utils import make_grid

    from .localize import boxes_from_scoremap

    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    pictures = (images.float().cpu() * std + mean).clamp(0, 1)
    h, w = pictures.shape[-2:]
    scale = max(1, math.ceil(OVERLAY_SIDE / min(h, w)))
    size = (h * scale, w * scale)
    pictures = torch.nn.functional.interpolate(pictures, size=size, mode="bilinear")
    maps = torch.nn.functional.interpolate(
        cams.float().cpu()[:, None], size=size, mode="bilinear", align_corners=False
    )[:, 0]
    low = maps.flatten(1).min(dim=1).values.view(-1, 1, 1)
    high = maps.flatten(1).max(dim=1).values.view(-1, 1, 1)
    maps = (maps - low) / (high - low).clamp_min(1e-12)
    heat = matplotlib.colormaps["viridis"](maps.numpy())[..., :3]
    tiles = (0.5 * pictures.permute(0, 2, 3, 1).numpy() + 0.5 * heat) * 255
    tiles = np.ascontiguousarray(tiles.astype(np.uint8))
    for k in range(len(tiles)):
        if boxes is not None and k < len(boxes):
            for x0, y0, x1, y1 in np.asarray(boxes[k], dtype=float).reshape(-1, 4) * scale:
                cv2.rectangle(tiles[k], (int(x0), int(y0)), (int(x1), int(y1)), (255, 255, 255), 2)
        if threshold is not None:
            for x0, y0, x1, y1 in boxes_from_scoremap(maps[k].numpy(), [threshold])[0]:
                cv2.rectangle(tiles[k], (int(x0), int(y0)), (int(x1), int(y1)), (213, 94, 0), 2)
    grid = torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255
    return make_grid(grid, nrow=min(len(images), 4), padding=4, pad_value=0.5)


def fixed_val_batch(val_split, crop_size: int, count: int = OVERLAY_IMAGES):
    """The first ``count`` val images, one per class first (the same at every evaluation)."""
    from .data.dataset import RecordDataset, eval_transform

    records = val_split.records
    picked, classes = [], set()
    for k, record in enumerate(records):
        if record.label not in classes:
            picked.append(k)
            classes.add(record.label)
        if len(picked) == count:
            break
    for k in range(len(records)):
        if len(picked) == min(count, len(records)):
            break
        if k not in picked:
            picked.append(k)
    from .localize import resize_boxes

    dataset = RecordDataset(val_split, eval_transform(crop_size))
    chosen = sorted(picked)
    items = [dataset[k] for k in chosen]
    images = torch.stack([item[0] for item in items])
    labels = torch.tensor([int(item[1]) for item in items])
    boxes = [
        resize_boxes(np.asarray(records[k].boxes).reshape(-1, 4), records[k].size, (crop_size,) * 2)
        if records[k].boxes and records[k].size
        else np.zeros((0, 4))
        for k in chosen
    ]
    return images, labels, boxes
