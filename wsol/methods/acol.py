"""Adversarial Complementary Learning (Zhang et al., CVPR 2018), as clovaai/wsolevaluation's
``wsol/method/acol.py`` and its ``*Acol`` models define it.

Two classifier branches read the backbone's feature map; each is a 3 x 3 conv, ReLU, 3 x 3 conv,
ReLU and a 1 x 1 conv to class maps, whose spatial mean are the logits. Branch A classifies. Its
class map of the label is min-max normalised per image; where it reaches ``acol_threshold``
the feature map is erased (set to 0), and branch B classifies what is left. The loss is the sum
of both branches' cross-entropies. The erasing mask carries no gradient.

In training the label is the true one; at evaluation the CAM of a class is the pixelwise maximum
of both branches' normalised class maps, B reading the features erased with that class's map
(the reference's ``return_cam``). Logits (top-1) are branch A's.

Where the branches go, how wide they are and how they start is each backbone's
(:meth:`WSOLModel.prepare_acol`); the model's linear classifier is removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import Method, MethodConfig, attach_head, register_method, unit


@dataclass(frozen=True)
class ACoLParams(MethodConfig):
    method: str = "acol"
    acol_threshold: float = 0.7  # erase where A's normalised map >= this (config.py's default)

    def check(self) -> list[str]:
        return unit(self.acol_threshold, "acol_threshold")


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each (h, w) map of ``maps`` (..., h, w) to [0, 1]; a constant map
    becomes 0 (the reference divides by zero there and gets NaN)."""
    flat = maps.flatten(-2)
    low = flat.min(dim=-1, keepdim=True).values
    span = flat.max(dim=-1, keepdim=True).values - low
    out = (flat - low) / torch.where(span > 0, span, torch.ones_like(span))
    return out.view_as(maps)


def class_maps(maps: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """The map of each image's class: (B, K, h, w), (B,) -> (B, 1, h, w)."""
    return maps[torch.arange(len(classes), device=maps.device), classes].unsqueeze(1)


def erase(features: torch.Tensor, attention: torch.Tensor, threshold: float) -> torch.Tensor:
    """``features`` (B, C, h, w) set to 0 where ``attention`` (B, 1, h, w) >= ``threshold``."""
    return features * (attention < threshold).to(features.dtype)


def _branch(channels: int, width: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, width, kernel_size=3, padding=1),
        nn.ReLU(inplace=False),
        nn.Conv2d(width, width, kernel_size=3, padding=1),
        nn.ReLU(inplace=False),
        nn.Conv2d(width, num_classes, kernel_size=1),
    )


class AcolHead(nn.Module):
    """ACoL's two branches (the model's ``method_head``)."""

    def __init__(self, channels: int, width: int, num_classes: int, threshold: float):
        super().__init__()
        self.threshold = threshold
        self.branch_a = _branch(channels, width, num_classes)
        self.branch_b = _branch(channels, width, num_classes)
        # (features, class maps A) of the last forward without labels and without gradients:
        # the CAM reading of the same features (evaluation) reuses them instead of running
        # branch A a second time
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    def maps(self, features: torch.Tensor, classes: torch.Tensor, maps_a=None):
        """(class maps A, class maps B): B reads ``features`` erased where A's normalised map of
        ``classes`` reaches the threshold (``maps_a``: A's maps of ``features``, if known)."""
        if maps_a is None:
            maps_a = self.branch_a(features)
        attention = normalize_maps(class_maps(maps_a.detach(), classes))
        return maps_a, self.branch_b(erase(features, attention, self.threshold))

    def forward(self, model, features: torch.Tensor, targets: torch.Tensor | None = None) -> dict:
        if targets is None:
            maps_a = self.branch_a(features)
            self._last = None if torch.is_grad_enabled() else (features, maps_a)
            return {"logits": maps_a.mean(dim=(2, 3))}
        maps_a, maps_b = self.maps(features, targets)
        return {"logits": maps_a.mean(dim=(2, 3)), "logits_b": maps_b.mean(dim=(2, 3))}

    def cams(self, features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """max(normalised A, normalised B) of ``classes``: (B, h, w)."""
        last, self._last = self._last, None
        known = last[1] if last is not None and last[0] is features else None
        maps_a, maps_b = self.maps(features, classes, known)
        a = normalize_maps(class_maps(maps_a, classes))
        b = normalize_maps(class_maps(maps_b, classes))
        return torch.maximum(a, b).squeeze(1)


@register_method
class ACoL(Method):
    name = "acol"
    title = "ACoL"
    params = ACoLParams
    keeps_classifier = False

    def adapt_model(self, model):
        layout = model.prepare_acol()
        num_classes = model.classifier.out_features
        model.neck = layout.neck
        model.classifier = None
        head = AcolHead(layout.channels, layout.width, num_classes, self.config.acol_threshold)
        return attach_head(model, head, layout)

    def training_loss(self, model, batch, label_smoothing: float = 0.0):
        out = model(batch.images, batch.targets_a)
        loss_a = F.cross_entropy(out["logits"], batch.targets_a, label_smoothing=label_smoothing)
        loss_b = F.cross_entropy(out["logits_b"], batch.targets_a, label_smoothing=label_smoothing)
        return out["logits"], loss_a + loss_b

    def cams(self, model, features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return model.method_head.cams(features, classes)
