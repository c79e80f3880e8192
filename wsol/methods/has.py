"""Hide-and-Seek (Singh & Lee, ICCV 2017), as clovaai/wsolevaluation's ``wsol/method/has.py``
does it: each training image is cut into cells of ``has_grid_size`` x ``has_grid_size`` pixels
(the last row and column clipped to the image), and each cell is hidden (set to 0, the
normalised image's mean colour) with probability ``has_drop_rate``, independently per image and
cell; ``has_grid_size`` 0 hides nothing. Labels and loss are unchanged.

The reference walks the cells with Python's ``random``; here one uniform draw per cell comes
from the training generator, so a seed fixes the hidden cells. (The reference also steps over
the height with the width's range; the two differ only for non-square inputs, and its training
crops are square.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Method, MethodConfig, MixedBatch, register_method, unit


@dataclass(frozen=True)
class HaSParams(MethodConfig):
    """HaS's parameters (wsolevaluation config.py's defaults)."""

    method: str = "has"
    has_grid_size: int = 4  # side of a hidden cell in pixels (0: nothing hidden)
    has_drop_rate: float = 0.5  # probability that a cell is hidden

    def check(self) -> list[str]:
        grid = (
            []
            if self.has_grid_size >= 0
            else [f"has_grid_size: must be >= 0 (0: no hiding), not {self.has_grid_size!r}"]
        )
        return grid + unit(self.has_drop_rate, "has_drop_rate")


def hide_cells(
    images: torch.Tensor,
    grid_size: int,
    drop_rate: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(images with the hidden cells zeroed, hidden (B, ceil(H / g), ceil(W / g)) bool)."""
    b, _, h, w = images.shape
    if grid_size <= 0:
        return images, torch.zeros(b, 0, 0, dtype=torch.bool)
    rows, cols = -(-h // grid_size), -(-w // grid_size)
    # the reference's `random.random() <= drop_rate`: a draw equal to the rate hides its cell;
    # a rate of 0 hides nothing (the reference's draw of exactly 0.0, chance 2**-53, would)
    hidden = torch.rand(b, rows, cols, generator=generator) <= drop_rate
    if drop_rate <= 0:
        hidden = torch.zeros_like(hidden)
    mask = hidden.repeat_interleave(grid_size, 1).repeat_interleave(grid_size, 2)[:, :h, :w]
    keep = (~mask).to(images.device, images.dtype)[:, None]
    return images * keep, hidden


@register_method
class HaS(Method):
    name = "has"
    title = "HaS"
    params = HaSParams

    def prepare_batch(self, images, targets, generator):
        c = self.config
        hidden, _ = hide_cells(images, c.has_grid_size, c.has_drop_rate, generator)
        return MixedBatch(hidden, targets, targets, 1.0)
