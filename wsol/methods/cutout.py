"""Cutout (DeVries & Taylor 2017): a square of each image set to zero."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Method, MethodConfig, MixedBatch, register_method


@dataclass(frozen=True)
class CutoutParams(MethodConfig):
    method: str = "cutout"
    cutout_size: float = 0.5  # square side: pixels (>= 1), or a fraction of the shorter side

    def check(self) -> list[str]:
        return (
            [] if self.cutout_size > 0 else [f"cutout_size: must be > 0, not {self.cutout_size!r}"]
        )


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
    title = "Cutout"
    params = CutoutParams

    def prepare_batch(self, images, targets, generator):
        return MixedBatch(cutout(images, self.config.cutout_size, generator), targets, targets, 1.0)
