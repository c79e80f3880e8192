"""Batch mixing for training: CutMix, Mixup, Cutout, and the mixed loss.

Pure functions on (B, C, H, W) tensors; randomness comes only from the ``generator`` passed in,
so a seed fixes the result. CutMix follows the official implementation (clovaai/CutMix-PyTorch):
one lambda per batch, a box of side ratio sqrt(1 - lambda) at a uniform centre, clipped to the
image, the partner chosen by a random permutation, and lambda recomputed from the clipped box.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class MixedBatch:
    """A mixed batch: images, both label sets and the weight of ``targets_a``."""

    images: torch.Tensor
    targets_a: torch.Tensor
    targets_b: torch.Tensor
    lam: float


def _uniform(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def _beta(alpha: float, generator: torch.Generator | None) -> float:
    # Beta(a, a) from two Gamma draws, so that only ``generator`` is consumed
    x = torch._standard_gamma(
        torch.tensor([alpha, alpha], dtype=torch.float64), generator=generator
    )
    return float(x[0] / x.sum())


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
    lam = _beta(beta, generator)
    index = torch.randperm(images.shape[0], generator=generator).to(images.device)
    h, w = images.shape[-2:]
    x0, y0, x1, y1 = rand_box(h, w, lam, generator)
    mixed = images.clone()
    mixed[:, :, y0:y1, x0:x1] = images[index, :, y0:y1, x0:x1]
    lam = 1.0 - (x1 - x0) * (y1 - y0) / float(w * h)
    return MixedBatch(mixed, targets, targets[index], lam)


def mixup(
    images: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 1.0,
    generator: torch.Generator | None = None,
) -> MixedBatch:
    """Blend every image with a shuffled partner: lam * x + (1 - lam) * x[perm]."""
    lam = _beta(alpha, generator)
    index = torch.randperm(images.shape[0], generator=generator).to(images.device)
    mixed = lam * images + (1.0 - lam) * images[index]
    return MixedBatch(mixed, targets, targets[index], lam)


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


def mixed_loss(
    logits: torch.Tensor, batch: MixedBatch, label_smoothing: float = 0.0
) -> torch.Tensor:
    """lam * CE(logits, y_a) + (1 - lam) * CE(logits, y_b)."""
    loss_a = F.cross_entropy(logits, batch.targets_a, label_smoothing=label_smoothing)
    if batch.lam == 1.0:
        return loss_a
    loss_b = F.cross_entropy(logits, batch.targets_b, label_smoothing=label_smoothing)
    return batch.lam * loss_a + (1.0 - batch.lam) * loss_b


@dataclass(frozen=True)
class MixingConfig:
    """Which method mixes batches, and its parameters."""

    method: str = "base"  # base | cutmix | mixup | cutout
    cutmix_beta: float = 1.0
    cutmix_prob: float = 1.0
    mixup_alpha: float = 1.0
    cutout_size: float = 0.5

    def __post_init__(self):
        if self.method not in ("base", "cutmix", "mixup", "cutout"):
            raise ValueError(f"unknown method {self.method!r}: base, cutmix, mixup or cutout")


def mix_batch(
    images: torch.Tensor,
    targets: torch.Tensor,
    config: MixingConfig,
    generator: torch.Generator | None = None,
) -> MixedBatch:
    """Apply the configured method to a batch (CutMix with probability ``cutmix_prob``).

    As the official code: CutMix with ``cutmix_beta <= 0`` (clovaai/CutMix-PyTorch's
    ``args.beta > 0 and r < args.cutmix_prob``; wsolevaluation's ``cutmix_beta > 0``) and Mixup
    with ``mixup_alpha <= 0`` (facebookresearch/mixup-cifar10: lam = 1) leave the batch as it is.
    """
    if config.method == "cutmix" and config.cutmix_beta > 0:
        if _uniform(generator) < config.cutmix_prob:
            return cutmix(images, targets, config.cutmix_beta, generator)
    if config.method == "mixup" and config.mixup_alpha > 0:
        return mixup(images, targets, config.mixup_alpha, generator)
    if config.method == "cutout":
        return MixedBatch(cutout(images, config.cutout_size, generator), targets, targets, 1.0)
    return MixedBatch(images, targets, targets, 1.0)
