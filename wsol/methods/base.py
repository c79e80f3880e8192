"""What every WSOL method is: a registered object with hooks for what it changes.

Training and evaluation reach a method only through these hooks, never by its name:

* ``adapt_model(model)``: change the model (extra layers, heads); the default keeps it;
* ``prepare_batch(images, targets, generator)``: change a training batch (mixing, hiding);
* ``training_loss(model, batch, label_smoothing)``: the forward pass and loss of a training
  batch (the default: the model's logits and ``loss``);
* ``loss(logits, batch, label_smoothing)``: the training loss of a batch from its logits;
* ``correct(logits, batch)``: what the training log counts as correct (default: top-1 right);
* ``train_dataset(split, data)``: the training dataset (default: images and labels with the
  reference's training transform);
* ``check_train_split(split)``: refuse a training split the method cannot learn from;
* ``cams(model, features, classes)``: read the CAMs of a model made by this method.

Two attributes say what a method trains on: ``train_split`` (``train``; the FSL baseline trains
on ``val``, the fully supervised split) and ``trains_on_masks`` (its batches carry localization
masks instead of labels).

A method's parameters live in the config's ``method`` section: each method declares them as a
dataclass of its own (a :class:`MethodConfig` subclass, its ``params``), registered with it.
"""

from __future__ import annotations

import dataclasses
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
    #: how reports name the method in a sentence
    title = "plain CAM"
    #: the dataclass of the method's parameters (a :class:`MethodConfig` subclass; plain CAM
    #: training has none but ``method``)
    params: type | None = None
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

    def train_dataset(self, split, data):
        """The training dataset of ``split`` (``data``: the config's data section): decoded and
        augmented by the loader's workers, or (``data.decode: device``) the files' bytes, which
        the training loop decodes on the device."""
        from ..data.dataset import EncodedDataset, RecordDataset, train_transform

        if getattr(data, "decode", "cpu") == "device":
            return EncodedDataset(split, None, data.skip_bad_images)
        return RecordDataset(
            split, train_transform(data.resize_size, data.crop_size), data.skip_bad_images
        )

    def check_train_split(self, split) -> None:
        """Raise ValueError, naming the image, if the method cannot learn from ``split``."""

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


def method_title(name: str) -> str:
    """How reports name a method (its ``title``), or the name itself if it is not registered."""
    return getattr(_REGISTRY.get(name), "title", name)


def list_methods() -> list[str]:
    return sorted(_REGISTRY)


def create_method(config: MethodConfig) -> Method:
    """The method a config's ``method`` section names, with its parameters."""
    return _REGISTRY[config.method](config)


#: the parameters of the one flat ``method`` section of earlier versions, at their defaults: a
#: run folder written by them lists every method's keys; a key of another method at its
#: default is dropped when such a config is read (any other value is an error)
LEGACY_DEFAULTS = {
    "cutmix_beta": 1.0, "cutmix_prob": 1.0, "mixup_alpha": 1.0, "cutout_size": 0.5,
    "has_grid_size": 4, "has_drop_rate": 0.5, "adl_drop_rate": 0.75, "adl_threshold": 0.9,
    "acol_threshold": 0.7, "spg_threshold_1h": 0.7, "spg_threshold_1l": 0.01,
    "spg_threshold_2h": 0.5, "spg_threshold_2l": 0.05, "spg_threshold_3h": 0.7,
    "spg_threshold_3l": 0.1, "fsl_target": "auto",
}  # fmt: skip


def unit(value: float, key: str) -> list[str]:
    """The check of a rate or threshold: one line if ``value`` is outside [0, 1]."""
    return [] if 0 <= value <= 1 else [f"{key}: must be in [0, 1], not {value!r}"]


class _MethodConfigType(type):
    """``MethodConfig(name, **params)`` builds the named method's own parameters' class."""

    def __call__(cls, *args, **kwargs):
        if cls is not MethodConfig:
            return super().__call__(*args, **kwargs)
        if len(args) > 1:
            raise TypeError("MethodConfig(method, **params): the parameters go by name")
        method = args[0] if args else kwargs.pop("method", "base")
        target, kept, errors = method_section({"method": method, **kwargs})
        if errors:
            raise ValueError("; ".join(e.removeprefix("method: ") for e in errors))
        kept.pop("method", None)
        if target is MethodConfig:
            return super().__call__(method, **kept)
        return target(method, **kept)


@dataclass(frozen=True)
class MethodConfig(metaclass=_MethodConfigType):
    """Which method trains, and its parameters (the config's ``method`` section).

    Every method declares its own parameters: a frozen dataclass that subclasses this one, set
    as its ``Method.params`` (plain CAM training, ``base``, has none). ``MethodConfig(name,
    **params)`` builds that method's class, so ``MethodConfig("cutmix", cutmix_beta=1.0)`` is a
    ``CutMixParams``; a key the method does not have is refused, naming its keys. A key of
    another method at the default of the one flat section of earlier versions (``LEGACY_DEFAULTS``:
    every run folder they wrote lists them all) is dropped, so old recipes and runs load.
    """

    method: str = "base"  # a registered method: wsol.methods.list_methods()

    def __post_init__(self):
        if self.method not in _REGISTRY:
            names = list_methods()
            raise ValueError(
                f"unknown method {self.method!r}: {', '.join(names[:-1])} or {names[-1]}"
            )
        if params_class(self.method) is not type(self):
            raise ValueError(
                f"method {self.method}'s parameters are {params_class(self.method).__name__}, "
                f"not {type(self).__name__}"
            )

    def check(self) -> list[str]:
        """One line per value the method cannot use, ``key: must be ...`` (types are checked
        when the config is read)."""
        return []


def params_class(method: str) -> type[MethodConfig]:
    """The dataclass of ``method``'s parameters."""
    return getattr(_REGISTRY[method], "params", None) or MethodConfig


def method_fields(method: str) -> list[str]:
    """The keys of ``method``'s section: ``method`` and its own parameters."""
    return [f.name for f in dataclasses.fields(params_class(method))]


def method_section(section: dict) -> tuple[type[MethodConfig], dict, list[str]]:
    """(the parameters' class, the section's keys that belong to it, one error line per key
    that does not) for a ``method`` section as read from a file; legacy keys at their old
    defaults are dropped (see :class:`MethodConfig`)."""
    name = section.get("method", "base")
    if name not in _REGISTRY:
        names = list_methods()
        return (
            MethodConfig,
            {},
            [f"method: unknown method {name!r}: {', '.join(names[:-1])} or {names[-1]}"],
        )
    cls = params_class(name)
    known = set(method_fields(name))
    kept, errors = {}, []
    for key, value in section.items():
        if key in known:
            kept[key] = value
        elif key in LEGACY_DEFAULTS and _same(value, LEGACY_DEFAULTS[key]):
            continue  # an earlier version's flat section: another method's default
        else:
            own = ", ".join(k for k in method_fields(name) if k != "method") or "none"
            errors.append(f"{key}: unknown key for method {name} (its parameters: {own})")
    return cls, kept, errors


def _same(value, default) -> bool:
    if isinstance(default, str):
        return value == default
    try:
        return float(value) == float(default)
    except (TypeError, ValueError):
        return False


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
