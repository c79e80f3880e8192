"""The model interface every WSOL backbone exposes: features, a linear classifier, CAMs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn


class WSOLModel(nn.Module):
    """A classifier whose logits are a linear map of the global average of a feature map.

    Subclasses set ``backbone`` (image -> features), optionally ``neck`` (new conv layers on top
    of the backbone, trained at the head learning rate) and ``classifier`` (nn.Linear).
    ``forward_features`` gives the (B, C, h, w) map that CAMs are computed from, so logits and
    CAMs come from one forward pass (:meth:`forward_with_features`).
    """

    backbone: nn.Module
    neck: nn.Module
    classifier: nn.Linear
    #: how torchvision's ImageNet state-dict keys map to ours (None: skip the key)
    torchvision_weights: str | None = None

    def backbone_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.backbone_features(x))

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.forward_features(x)
        logits = self.classifier(features.mean(dim=(2, 3)))
        return logits, features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_features(x)[0]

    def cams(self, features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """CAMs (B, h, w) of ``classes`` (B,): classifier weights of the class times the
        features, averaged over channels (the reference's ``(w * f).mean(1)``; no bias)."""
        weights = self.classifier.weight[classes].to(features.dtype)  # (B, C)
        return torch.einsum("bc,bchw->bhw", weights, features) / features.shape[1]

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.neck.parameters(), *self.classifier.parameters()]

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    @staticmethod
    def rename_torchvision_key(key: str) -> str | None:
        return "backbone." + key


def load_backbone_weights(
    model: WSOLModel, state_dict: dict, rename: Callable[[str], str | None]
) -> list[str]:
    """Copy matching backbone tensors from ``state_dict`` into ``model``; the head stays fresh.

    Returns the backbone keys that were not found. Raises if nothing matched (wrong file).
    """
    own = model.state_dict()
    backbone_keys = {k for k in own if k.startswith("backbone.")}
    loaded = {}
    for key, value in state_dict.items():
        new = rename(key)
        if new is None or new not in backbone_keys:
            continue
        if own[new].shape != value.shape:
            raise ValueError(
                f"weight {key}: shape {tuple(value.shape)} does not fit {new} {tuple(own[new].shape)}"
            )
        loaded[new] = value
    if not loaded:
        raise ValueError("no backbone weight in the state dict matches this model")
    model.load_state_dict(loaded, strict=False)
    return sorted(backbone_keys - set(loaded))


def read_state_dict(path: str | Path) -> dict:
    """A state dict from a local file: a plain state dict, or a checkpoint holding one under
    ``model`` or ``state_dict``; ``module.`` (DDP) prefixes are removed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights {path} do not exist")
    data = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict"):
        if isinstance(data, dict) and key in data and isinstance(data[key], dict):
            data = data[key]
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in data.items()}
