"""What every WSOL method is: a registered object with hooks for what it changes.

Training and evaluation reach a method only through these hooks, never by its name:

* ``adapt_model(model)``: change the model (extra layers, heads); the default keeps it;
* ``prepare_batch(images, targets, generator)``: change a training batch (mixing, hiding);
* ``training_loss(model, batch, label_smoothing)``: the forward pass and loss of a training
  batch (the default: the model's logits and ``loss``);
* ``loss(logits, batch, label_smoothing)``: the training loss of a batch from its logits;
* ``correct(logits, batch)``: what the training log counts as correct (default: top-1 right);
* ``cams(model, features, classes)``: read the CAMs of a model made by this method.

Two attributes say what a method trains on: ``train_split`` (``train``; the FSL baseline trains
on ``val``, the fully supervised split) and ``trains_on_masks`` (its batches carry localization
masks instead of labels).

A method's parameters live in the config's ``method`` section (:class:`MethodConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

_REGISTRY: dict[str, type[Method]] = {}


@dataclass
class MixedBatch:
    """A mixed batch: images, both label sets and the weight of ``targets_a``."""

    images: torch.Tensor
    targets_a: torch.Tensor
    targets_b: torch.Tensor
    lam: float


def mixed_loss(
    logits: torch.Tensor, batch: MixedBatch, label_smoothing: float = 0.0
) -> torch.Tensor:
    """lam * CE(logits, y_a) + (1 - lam) * CE(logits, y_b)."""
    loss_a = F.cross_entropy(logits, batch.targets_a, label_smoothing=label_smoothing)
    if batch.lam == 1.0:
        return loss_a
    loss_b = F.cross_entropy(logits, batch.targets_b, label_smoothing=label_smoothing)
    return batch.lam * loss_a + (1.0 - batch.lam) * loss_b


class Method:
    """Plain CAM training (the reference's ``cam``): every hook at its default."""

    name = "base"
    #: whether the model keeps its linear classifier (and so a pretrained one can be kept)
    keeps_classifier = True
    #: the split a method trains on (``val``: the fully supervised train-fullsup split)
    train_split = "train"
    #: whether training batches carry (B, H, W) localization masks instead of labels
    trains_on_masks = False

    def __init__(self, config: MethodConfig):
        self.config = config

    def adapt_model(self, model):
        return model

    def prepare_batch(
        self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator | None
    ) -> MixedBatch:
        return MixedBatch(images, targets, targets, 1.0)

    def training_loss(
        self, model, batch: MixedBatch, label_smoothing: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, loss) of a training batch."""
        logits = model(batch.images)
        return logits, self.loss(logits, batch, label_smoothing)

    def loss(self, logits: torch.Tensor, batch: MixedBatch, label_smoothing: float = 0.0):
        return mixed_loss(logits, batch, label_smoothing)

    def correct(self, logits: torch.Tensor, batch: MixedBatch) -> torch.Tensor:
        """How many images of the batch count as right (top-1 against the first labels)."""
        return (logits.detach().argmax(dim=1) == batch.targets_a).sum()

    def cams(self, model, features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return model.cams(features, classes)


def attach_head(model, head, layout):
    """Give ``model`` a method's own head (see ``WSOLModel.method_head``), initialised as the
    layout says, and the layout's learning-rate groups."""
    layout.init(head)
    model.method_head = head
    model.head_prefixes = layout.head_prefixes
    return model


def register_method(cls: type[Method]) -> type[Method]:
    """Register a :class:`Method` subclass under its ``name``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"method {cls.name} is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


register_method(Method)


def list_methods() -> list[str]:
    return sorted(_REGISTRY)


def create_method(config: MethodConfig) -> Method:
    """The method a config's ``method`` section names, with its parameters."""
    return _REGISTRY[config.method](config)


@dataclass(frozen=True)
class MethodConfig:
    """Which method trains, and its parameters (the config's ``method`` section)."""

    method: str = "base"  # a registered method: wsol.methods.list_methods()
    cutmix_beta: float = 1.0
    cutmix_prob: float = 1.0
    mixup_alpha: float = 1.0
    cutout_size: float = 0.5
    has_grid_size: int = 4  # HaS: side of a hidden cell in pixels (wsolevaluation's default)
    has_drop_rate: float = 0.5  # HaS: probability that a cell is hidden (its default)
    adl_drop_rate: float = 0.75  # ADL: probability of the drop mask (its default)
    adl_threshold: float = 0.9  # ADL: drop where attention >= threshold x max (its default)
    acol_threshold: float = 0.7  # ACoL: erase where A's normalised map >= this (its default)
    # SPG: (high, low) thresholds of the masks B2, B1 and C learn (wsolevaluation's defaults)
    spg_threshold_1h: float = 0.7
    spg_threshold_1l: float = 0.01
    spg_threshold_2h: float = 0.5
    spg_threshold_2l: float = 0.05
    spg_threshold_3h: float = 0.7
    spg_threshold_3l: float = 0.1
    # FSL: what its foreground target is made of: boxes, masks or auto (boxes where an image has
    # any, else masks: CUB and ImageNet boxes, OpenImages masks)
    fsl_target: str = "auto"

    def __post_init__(self):
        if self.method not in _REGISTRY:
            names = list_methods()
            raise ValueError(
                f"unknown method {self.method!r}: {', '.join(names[:-1])} or {names[-1]}"
            )


MixingConfig = MethodConfig  # the name of earlier versions


def mix_batch(
    images: torch.Tensor,
    targets: torch.Tensor,
    config: MethodConfig,
    generator: torch.Generator | None = None,
) -> MixedBatch:
    """The batch the configured method trains on (:meth:`Method.prepare_batch`)."""
    return create_method(config).prepare_batch(images, targets, generator)


__all__ = [
    "Method",
    "MethodConfig",
    "MixedBatch",
    "MixingConfig",
    "create_method",
    "list_methods",
    "mix_batch",
    "mixed_loss",
    "register_method",
]
