"""Batch mixing: CutMix, Mixup, Cutout and the mixed loss (kept for earlier imports; the methods
live in :mod:`wsol.methods`, one module each)."""

from .methods import (
    MixedBatch,
    MixingConfig,
    cutmix,
    cutout,
    mix_batch,
    mixed_loss,
    mixup,
    rand_box,
)
from .methods.cutmix import _beta, _uniform

__all__ = [
    "MixedBatch",
    "MixingConfig",
    "_beta",
    "_uniform",
    "cutmix",
    "cutout",
    "mix_batch",
    "mixed_loss",
    "mixup",
    "rand_box",
]
