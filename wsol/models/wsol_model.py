"""The model interface every WSOL backbone exposes: features, a linear classifier, CAMs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..serialization import load_plain


@dataclass
class AcolLayout:
    """Where ACoL's two classifier branches sit on a backbone (the reference's ``*Acol``)."""

    neck: nn.Module  #: between the backbone and the branches (replaces the model's neck)
    channels: int  #: channels of the feature map the branches read
    width: int  #: channels of each branch's two 3 x 3 convs (the reference: 1024)
    init: Callable[[nn.Module], None]  #: the reference's initialisation of the branches
    head_prefixes: tuple[str, ...]  #: parameters at the head rate (the reference's grouping)


@dataclass
class SpgLayout:
    """Where SPG's guidance branches sit on a backbone (the reference's ``*Spg``).

    B1 and B2 read the outputs (or, for ``"input"``, the inputs) of two backbone modules, C the
    feature map; the class maps stay the model's classifier on the feature map (re-initialised
    as the reference's 1 x 1 conv ``SPG_A4``)."""

    b1: tuple[nn.Module, str]  #: (module, "output" or "input") feeding branch B1
    b1_channels: int
    b2: tuple[nn.Module, str]  #: the same for branch B2
    b2_channels: int
    width: int  #: channels of the B branches' convs
    channels: int  #: feature-map channels (what branch C and the classifier read)
    head_prefixes: tuple[str, ...]  #: parameters at the head rate (the reference's grouping)
    init: Callable[[nn.Module], None]  #: the reference's initialisation of the branches


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

    def __init__(self):
        super().__init__()
        #: a method's own head (ACoL's two branches, SPG's guidance branches), set by the
        #: method's ``adapt_model``; ``method_head(model, features, targets)`` returns a dict
        #: with at least ``logits`` (and, given training labels, what the method's loss needs)
        self.method_head: nn.Module | None = None

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.backbone_features(x))

    def pre_logit(self, features: torch.Tensor) -> torch.Tensor:
        """What the classifier reads of the feature map (InceptionV3: a dropout in training)."""
        return features

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits of the classifier on the global average of ``features``."""
        return self.classifier(self.pre_logit(features).mean(dim=(2, 3)))

    def head_outputs(self, features: torch.Tensor, targets: torch.Tensor | None = None) -> dict:
        """The head's outputs on ``features``: ``logits``, plus a method head's extra outputs."""
        if self.method_head is not None:
            return self.method_head(self, features, targets)
        return {"logits": self.classify(features)}

    def logits_from_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.head_outputs(features)["logits"]

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.forward_features(x)
        return self.logits_from_features(features), features

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None):
        """Logits; given ``targets`` (training labels), the dict of :meth:`head_outputs`, which
        is what a method with its own head trains on (through DDP's forward, like any model)."""
        features = self.forward_features(x)
        if targets is None:
            return self.logits_from_features(features)
        return self.head_outputs(features, targets)

    def cams(self, features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """CAMs (B, h, w) of ``classes`` (B,): classifier weights of the class times the
        features, averaged over channels (the reference's ``(w * f).mean(1)``; no bias)."""
        weights = self.classifier.weight[classes].to(features.dtype)  # (B, C)
        return torch.einsum("bc,bchw->bhw", weights, features) / features.shape[1]

    def adl_sites(self) -> list[nn.Module]:
        """The modules after whose output the ADL method puts its layers (see
        :mod:`wsol.methods.adl`); the default: the backbone's last module."""
        return [list(self.backbone.children())[-1]]

    def prepare_acol(self) -> AcolLayout:
        """Adapt the backbone for ACoL (see :mod:`wsol.methods.acol`) and say where its branches
        go; the default: on the model's feature map, branches as wide as it."""
        channels = self.classifier.in_features
        return AcolLayout(
            self.neck, channels, channels, xavier_init, (*self.head_prefixes, "method_head.")
        )

    def prepare_spg(self) -> SpgLayout:
        """Adapt the backbone for SPG (see :mod:`wsol.methods.spg`) and say where its branches
        go; the default: B1 and B2 after the backbone's third- and second-last modules."""
        blocks = list(self.backbone.children())
        b1, b2 = blocks[-3], blocks[-2]
        init_class_map(self.classifier)
        return SpgLayout(
            (b1, "output"),
            out_channels(b1),
            (b2, "output"),
            out_channels(b2),
            out_channels(b2),
            self.classifier.in_features,
            (*self.head_prefixes, "method_head."),
            xavier_init,
        )

    def enable_class_attention(self) -> None:
        """Keep the class token's attention of every forward pass outside training, for
        :meth:`class_token_attention`: a vision transformer's (see :mod:`wsol.models.vit`); a
        CNN has none."""
        raise ValueError(
            f"{type(self).__name__} has no class token: this method reads a vision "
            "transformer's attention (model.name: deit_small, deit_tiny, deit_base or vit_micro)"
        )

    def class_token_attention(self, features: torch.Tensor) -> torch.Tensor:
        """The class token's attention map (B, h, w) of the forward pass that made
        ``features`` (see :meth:`enable_class_attention`)."""
        self.enable_class_attention()  # a CNN: the sentence
        raise NotImplementedError

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


def out_channels(module: nn.Module) -> int:
    """Output channels of a conv block: those of its last conv."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(module).__name__} has no conv layer")
    return convs[-1].out_channels


def init_class_map(linear: nn.Linear) -> None:
    """The reference's initialisation of a class map that is a 1 x 1 conv (InceptionV3's
    ``SPG_A4``, every SPG model's): xavier-uniform weights, bias 0. As a linear layer on the
    pooled map it has the same fans, so the same distribution."""
    nn.init.xavier_uniform_(linear.weight)
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


def xavier_init(module: nn.Module) -> None:
    init_reference_weights(module, "xavier")


def he_init(module: nn.Module) -> None:
    init_reference_weights(module, "he")


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
    ``model`` or ``state_dict`` (DeiT's own files), or a ``.safetensors`` file (timm's);
    ``module.`` (DDP) prefixes are removed."""
    if str(path).endswith(".safetensors"):  # timm's and the Hugging Face hub's weight files
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:  # noqa: BLE001
            raise ValueError(f"cannot read {path} as a safetensors file: {err}") from None
    data = load_plain(path, "cpu", "pretrained weights")
    for key in ("model", "state_dict"):
        if isinstance(data, dict) and key in data and isinstance(data[key], dict):
            data = data[key]
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in data.items()}
