"""WSOL backbones behind one registry.

Example:
    >>> from wsol.models import create_model, list_models
    >>> list_models("resnet*")
    ['resnet18', 'resnet50']
    >>> model = create_model("resnet18", num_classes=10)  # pretrained=None: random weights
"""

from __future__ import annotations

import warnings
from pathlib import Path

from . import backbones  # noqa: F401  (registers the models)
from .registry import list_models, model_builder, register_model
from .wsol_model import WSOLModel, load_backbone_weights, read_state_dict


def create_model(
    name: str,
    num_classes: int,
    pretrained: str | Path | None = None,
    large_feature_map: bool = False,
) -> WSOLModel:
    """Build a registered model.

    Args:
        name: a name from :func:`list_models`.
        num_classes: size of the (always freshly initialised) linear classifier.
        pretrained: None (random), ``"torchvision"`` (torchvision's ImageNet weights for the
            backbone; downloaded on first use) or a path to a local state dict or checkpoint.
    """
    builder = model_builder(name)
    if large_feature_map:
        try:
            model = builder(num_classes, large_feature_map=True)
        except TypeError:
            raise ValueError(f"model {name} has no large_feature_map option") from None
    else:
        model = builder(num_classes)
    if pretrained in (None, "", "none", False):
        return model
    if str(pretrained) == "torchvision":
        if model.torchvision_weights is None:
            raise ValueError(f"model {name} has no torchvision weights")
        state = backbones.torchvision_state_dict(model.torchvision_weights)
        rename = model.rename_torchvision_key
    else:
        state = read_state_dict(pretrained)
        # our own checkpoints carry our key names; torchvision files carry theirs
        ours = any(k.startswith("backbone.") for k in state)
        rename = (lambda k: k) if ours else model.rename_torchvision_key
    missing = load_backbone_weights(model, state, rename)
    if missing:
        warnings.warn(
            f"{len(missing)} backbone weights were not in {pretrained}: {missing[:5]}...",
            stacklevel=2,
        )
    return model


__all__ = ["WSOLModel", "create_model", "list_models", "register_model"]
