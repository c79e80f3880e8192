"""The model interface every WSOL backbone exposes: features, a linear classifier, CAMs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..serialization import load_plain


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
    #: the torchvision weights enum member of the backbone (``"ResNet50_Weights.IMAGENET1K_V1"``)
    torchvision_weights: str | None = None
    #: parameter-name prefixes trained at the head learning rate (``lr * head_lr_mult``); all
    #: other parameters train at ``lr``. The reference backbones follow wsolevaluation's
    #: ``main.py`` (``_FEATURE_PARAM_LAYER_PATTERNS``), see each backbone.
    head_prefixes: tuple[str, ...] = ("neck.", "classifier.")
    #: torchvision keys of the ImageNet classifier and ours, for ``keep_pretrained_classifier``
    #: (empty: the backbone's pretrained classifier cannot be kept)
    torchvision_classifier_keys: tuple[tuple[str, str], ...] = ()

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

    def adl_sites(self) -> list[nn.Module]:
        """The modules after whose output the ADL method puts its layers (see
        :mod:`wsol.methods.adl`); the default: the backbone's last module."""
        return [list(self.backbone.children())[-1]]

    def is_head_parameter(self, name: str) -> bool:
        return name.startswith(self.head_prefixes)

    def head_parameters(self) -> list[nn.Parameter]:
        """The parameters trained at ``lr * head_lr_mult`` (see ``head_prefixes``)."""
        return [p for n, p in self.named_parameters() if self.is_head_parameter(n)]

    def backbone_parameters(self) -> list[nn.Parameter]:
        """The parameters trained at ``lr``: every parameter that is not a head parameter."""
        return [p for n, p in self.named_parameters() if not self.is_head_parameter(n)]

    @staticmethod
    def rename_torchvision_key(key: str) -> str | None:
        return "backbone." + key


def init_classifier(linear: nn.Linear) -> None:
    """The reference's initialisation of a linear classifier: weights N(0, 0.01), bias 0
    (wsolevaluation ``wsol/util.py``, ``initialize_weights``)."""
    nn.init.normal_(linear.weight, 0.0, 0.01)
    nn.init.zeros_(linear.bias)


def init_reference_weights(module: nn.Module, conv_init: str) -> None:
    """wsolevaluation's ``initialize_weights`` over every submodule: convs ``xavier``
    (xavier-uniform) or ``he`` (kaiming-normal, fan_out, ReLU) with zero bias, BatchNorm
    weight 1 / bias 0, linear N(0, 0.01) / 0. Pretrained weights loaded afterwards overwrite it."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            if conv_init == "xavier":
                nn.init.xavier_uniform_(m.weight)
            elif conv_init == "he":
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            else:
                raise ValueError(f"conv_init must be 'xavier' or 'he', not {conv_init!r}")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            init_classifier(m)


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
    data = load_plain(path, "cpu", "pretrained weights")
    for key in ("model", "state_dict"):
        if isinstance(data, dict) and key in data and isinstance(data[key], dict):
            data = data[key]
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in data.items()}
