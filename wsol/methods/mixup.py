"""Mixup (Zhang et al., ICLR 2018): every image blended with a shuffled partner, lambda ~
Beta(alpha, alpha) per batch; ``mixup_alpha <= 0`` leaves the batch as it is (lambda 1, as the
official facebookresearch/mixup-cifar10 code)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Method, MethodConfig, MixedBatch, register_method
from .cutmix import lambda_and_partners


@dataclass(frozen=True)
class MixupParams(MethodConfig):
    method: str = "mixup"
    mixup_alpha: float = 1.0  # lambda ~ Beta(alpha, alpha); <= 0: unmixed (the official code)


def mixup(
    images: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 1.0,
    generator: torch.Generator | None = None,
) -> MixedBatch:
    """Blend every image with a shuffled partner: lam * x + (1 - lam) * x[perm]."""
    lam, index = lambda_and_partners(images, alpha, generator)
    mixed = lam * images + (1.0 - lam) * images[index]
    return MixedBatch(mixed, targets, targets[index], lam)


@register_method
class Mixup(Method):
    name = "mixup"
    title = "Mixup"
    params = MixupParams

    def prepare_batch(self, images, targets, generator):
        if self.config.mixup_alpha > 0:
            return mixup(images, targets, self.config.mixup_alpha, generator)
        return MixedBatch(images, targets, targets, 1.0)
