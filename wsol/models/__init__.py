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

from . import backbones, vit  # noqa: F401  (register the models)
from .registry import list_models, model_builder, register_model
from .wsol_model import WSOLModel, load_backbone_weights, read_state_dict


def create_model(
    name: str,
    num_classes: int,
    pretrained: str | Path | None = None,
    large_feature_map: bool = False,
    keep_pretrained_classifier: bool = False,
    drop_path_rate: float = 0.0,
) -> WSOLModel:
    """Build a registered model.

    Args:
        name: a name from :func:`list_models`.
        num_classes: size of the linear classifier (initialised N(0, 0.01), as the reference).
        pretrained: None (random), ``"torchvision"`` (torchvision's ImageNet weights for the
            backbone; downloaded on first use) or a path to a local state dict or checkpoint.
        drop_path_rate: stochastic depth of a vision transformer (timm's option).
        keep_pretrained_classifier: also load the pretrained 1000-class ImageNet classifier
            (ResNets only), as wsolevaluation does for ILSVRC; the data's classes must be the
            ImageNet classes in torchvision's order (sorted wnids).
    """
    builder = model_builder(name)
    options = {"large_feature_map": large_feature_map, "drop_path_rate": drop_path_rate}
    options = {k: v for k, v in options.items() if v}  # only the options asked for
    try:
        model = builder(num_classes, **options)
    except TypeError:
        raise ValueError(f"model {name} has no {' or '.join(options)} option") from None
    if pretrained in (None, "", "none", False):
        if keep_pretrained_classifier:
            raise ValueError("model.keep_pretrained_classifier needs model.pretrained weights")
        return model
    hint = getattr(model, "download_hint", None)
    if str(pretrained) == "torchvision":
        if model.torchvision_weights is None:
            raise ValueError(
                f"model {name} has no torchvision weights"
                + (f": {hint()} and set model.pretrained to the file" if hint else "")
            )
        state = backbones.torchvision_state_dict(model.torchvision_weights)
        rename = model.rename_torchvision_key
    else:
        if hint and not Path(pretrained).exists():
            raise ValueError(f"model.pretrained: {pretrained} does not exist; {hint()}")
        state = read_state_dict(pretrained)
        # our own checkpoints carry our key names; torchvision files carry theirs
        ours = any(k.startswith("backbone.") for k in state)
        rename = (lambda k: k) if ours else model.rename_torchvision_key
    missing = load_backbone_weights(model, state, rename)
    if keep_pretrained_classifier:
        load_pretrained_classifier(model, state, name, pretrained)
    if missing:
        warnings.warn(
            f"{len(missing)} backbone weights were not in {pretrained}: {missing[:5]}...",
            stacklevel=2,
        )
    return model


def load_pretrained_classifier(model: WSOLModel, state: dict, name: str, source) -> None:
    """Copy the pretrained ImageNet classifier of ``state`` into ``model.classifier``."""
    pairs = dict(model.torchvision_classifier_keys)
    if not pairs:
        raise ValueError(
            f"model {name} cannot keep a pretrained classifier (the reference keeps it for "
            "ResNet-50 on ILSVRC only)"
        )
    own = model.state_dict()
    loaded = {}
    for theirs, ours in pairs.items():
        key = theirs if theirs in state else ours  # a torchvision file, or one of ours
        if key not in state:
            raise ValueError(f"{source} holds no classifier weight {theirs!r} to keep")
        if state[key].shape != own[ours].shape:
            raise ValueError(
                f"the pretrained classifier has {state[key].shape[0]} classes, the data "
                f"{own[ours].shape[0]}: keep_pretrained_classifier needs the 1000 ImageNet classes"
            )
        loaded[ours] = state[key]
    model.load_state_dict(loaded, strict=False)


__all__ = ["WSOLModel", "create_model", "list_models", "register_model"]
