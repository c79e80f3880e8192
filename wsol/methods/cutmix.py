"""CutMix (Yun et al., ICCV 2019), as the official implementation (clovaai/CutMix-PyTorch) does
it: one lambda ~ Beta(beta, beta) per batch, a box of side ratio sqrt(1 - lambda) at a uniform
centre, clipped to the image, pasted from a partner chosen by a random permutation, lambda
recomputed from the clipped box; applied with probability ``cutmix_prob``, never when
``cutmix_beta <= 0``. Randomness comes only from the ``generator`` passed in."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Method, MethodConfig, MixedBatch, register_method, unit


@dataclass(frozen=True)
class CutMixParams(MethodConfig):
    """CutMix's parameters (the official code's defaults, as wsolevaluation's config.py)."""

    method: str = "cutmix"
    cutmix_beta: float = 1.0  # lambda ~ Beta(beta, beta); <= 0: never mixed (the official code)
    cutmix_prob: float = 1.0  # probability that a batch is mixed

    def check(self) -> list[str]:
        return unit(self.cutmix_prob, "cutmix_prob")


def _uniform(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def _beta(alpha: float, generator: torch.Generator | None) -> float:
    # Beta(a, a) from two Gamma draws, so that only ``generator`` is consumed
    x = torch._standard_gamma(
        torch.tensor([alpha, alpha], dtype=torch.float64), generator=generator
    )
    return float(x[0] / x.sum())


def lambda_and_partners(
    images: torch.Tensor, alpha: float, generator
) -> tuple[float, torch.Tensor]:
    """One lambda ~ Beta(alpha, alpha) for the batch and each image's partner (a random
    permutation), drawn in this order from ``generator``: what CutMix and Mixup share."""
    lam = _beta(alpha, generator)
    return lam, torch.randperm(images.shape[0], generator=generator).to(images.device)


def rand_box(
    height: int, width: int, lam: float, generator: torch.Generator | None = None
) -> tuple[int, int, int, int]:
    """A box (x0, y0, x1, y1), x1/y1 exclusive, of side ratio sqrt(1 - lam) at a uniform centre,
    clipped to the image (the official ``rand_bbox``, with H and W kept apart)."""
    cut = (1.0 - lam) ** 0.5
    cut_w, cut_h = int(width * cut), int(height * cut)
    cx = int(torch.randint(width, (), generator=generator))
    cy = int(torch.randint(height, (), generator=generator))
    x0, x1 = min(max(cx - cut_w // 2, 0), width), min(max(cx + cut_w // 2, 0), width)
    y0, y1 = min(max(cy - cut_h // 2, 0), height), min(max(cy + cut_h // 2, 0), height)
    return x0, y0, x1, y1


def cutmix(
    images: torch.Tensor,
    targets: torch.Tensor,
    beta: float = 1.0,
    generator: torch.Generator | None = None,
) -> MixedBatch:
    """Paste a box from a shuffled partner into every image; lambda = 1 - box area / image area."""
    lam, index = lambda_and_partners(images, beta, generator)
    h, w = images.shape[-2:]
    x0, y0, x1, y1 = rand_box(h, w, lam, generator)
    mixed = images.clone()
    mixed[:, :, y0:y1, x0:x1] = images[index, :, y0:y1, x0:x1]
    lam = 1.0 - (x1 - x0) * (y1 - y0) / float(w * h)
    return MixedBatch(mixed, targets, targets[index], lam)


@register_method
class CutMix(Method):
    name = "cutmix"
    title = "CutMix"
    params = CutMixParams

    def prepare_batch(self, images, targets, generator):
        c = self.config
        # the probability is drawn only when mixing can happen (cutmix_beta > 0), as before
        if c.cutmix_beta > 0 and _uniform(generator) < c.cutmix_prob:
            return cutmix(images, targets, c.cutmix_beta, generator)
        return MixedBatch(images, targets, targets, 1.0)
