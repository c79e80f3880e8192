"""WSOL methods behind one registry: ``base`` (plain CAM training), ``cutmix``, ``mixup``,
``cutout``, ``has`` (Hide-and-Seek), ``acol`` (adversarial complementary learning), ``spg``
(self-produced guidance), ``adl`` (attention-based dropout), and ``fsl``, Choe et al.'s few-shot
learning baseline (a foreground predictor trained on the fully supervised val split), and
``tscam`` (TS-CAM) and ``sat`` (the spatial-aware token), on vision transformers. Each is a :class:`Method` with
hooks (model, batch, loss, CAM reading) that training and evaluation call; none of them names a
method.

Example:
    >>> from wsol.methods import MethodConfig, create_method, list_methods
    >>> list_methods()
    ['acol', 'adl', 'base', 'cutmix', 'cutout', 'fsl', 'has', 'mixup', 'sat', 'spg', 'tscam']
    >>> method = create_method(MethodConfig("cutmix", cutmix_beta=1.0))
"""

from .acol import ACoL, AcolHead, erase, normalize_maps
from .adl import ADL, ADLMethod, drop_mask
from .base import (
    Method,
    MethodConfig,
    MixedBatch,
    MixingConfig,
    create_method,
    list_methods,
    mix_batch,
    mixed_loss,
    register_method,
)
from .cutmix import CutMix, cutmix, rand_box
from .cutout import Cutout, cutout
from .fsl import FSL, ForegroundHead, foreground_loss
from .has import HaS, hide_cells
from .mixup import Mixup, mixup
from .sat import SAT, SATHead, batch_area_loss, gaussian_kernel, normalization_loss
from .spg import SPG, SpgHead, guidance_mask, guided_bce, spg_loss
from .tscam import TSCAM, TSCAMHead

__all__ = [
    "ACoL",
    "AcolHead",
    "SPG",
    "SpgHead",
    "SAT",
    "SATHead",
    "TSCAM",
    "TSCAMHead",
    "batch_area_loss",
    "gaussian_kernel",
    "normalization_loss",
    "erase",
    "guidance_mask",
    "guided_bce",
    "normalize_maps",
    "spg_loss",
    "ADL",
    "ADLMethod",
    "drop_mask",
    "CutMix",
    "Cutout",
    "FSL",
    "ForegroundHead",
    "foreground_loss",
    "HaS",
    "Method",
    "MethodConfig",
    "MixedBatch",
    "Mixup",
    "MixingConfig",
    "create_method",
    "cutmix",
    "cutout",
    "hide_cells",
    "list_methods",
    "mix_batch",
    "mixed_loss",
    "mixup",
    "rand_box",
    "register_method",
]
