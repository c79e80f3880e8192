"""Cutout (DeVries & Taylor 2017): a square of each image set to zero."""

from __future__ import annotations

import torch

from .base import Method, MixedBatch, register_method


def cutout(
    images: torch.Tensor, size: int | float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero a square (side ``size`` pixels, or ``size`` times the shorter side if < 1) at a
    uniform centre in each image, clipped to the image (DeVries & Taylor 2017)."""
    b, _, h, w = images.shape
    side = int(round(size * min(h, w))) if size < 1 else int(size)
    cy = torch.randint(h, (b,), generator=generator)
    cx = torch.randint(w, (b,), generator=generator)
    ys = torch.arange(h)[None, :, None]
    xs = torch.arange(w)[None, None, :]
    y0, x0 = (cy - side // 2)[:, None, None], (cx - side // 2)[:, None, None]
    hole = (ys >= y0) & (ys < y0 + side) & (xs >= x0) & (xs < x0 + side)
    return images * (~hole).to(images.device, images.dtype)[:, None]


@register_method
class Cutout(Method):
    name = "cutout"

    def prepare_batch(self, images, targets, generator):
        return MixedBatch(cutout(images, self.config.cutout_size, generator), targets, targets, 1.0)
