"""Training configuration: dataclasses, read from YAML, overridden by ``key=value`` arguments.

A run folder keeps the resolved config as ``config.yaml``, so every run can be rebuilt and
evaluated from its folder alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .mixing import MixingConfig


@dataclass
class DataConfig:
    """Where the data are and how images are prepared.

    ``format``: ``wsol`` (``metadata`` holds train/, val/, test/ in the wsolevaluation layout;
    image ids are relative to ``root``: the reference's own splits, e.g. CUB's separate val
    images), ``cub`` (native CUB-200-2011 root: ``train`` is the official training split,
    ``test`` the official test split, and there is no ``val`` unless ``val_per_class`` > 0 holds
    that many training images per class out of ``train``) or ``imagenet`` (``root`` with train/
    and val/; ``annotations``: val XML folder or LOC_val_solution.csv; val and test are both
    ILSVRC val unless ``metadata`` is given).
    """

    format: str = "cub"
    root: str = ""
    metadata: str | None = None
    masks: str | None = None
    annotations: str | None = None
    val_per_class: int = 0  # cub only: > 0 holds this many training images per class out as val
    resize_size: int = 256  # train: resize to this square, then random crop
    crop_size: int = 224  # train crop; val/test: resize straight to this square
    workers: int = 4
    skip_bad_images: bool = False


@dataclass
class ModelConfig:
    name: str = "resnet50"
    pretrained: str | None = "torchvision"  # torchvision | PATH | null
    large_feature_map: bool = False  # one stage less downsampling: 28 x 28 CAMs (reference option)
    keep_pretrained_classifier: bool = False  # ResNets on ImageNet: keep the 1000-class fc
    channels_last: bool = False


@dataclass
class OptimConfig:
    lr: float = 1.7e-4  # backbone
    head_lr_mult: float = 10.0  # head (new layers) lr = lr * head_lr_mult
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = True  # the reference's SGD (wsolevaluation main.py) uses Nesterov momentum
    scheduler: str = "step"  # step | cosine | none
    lr_step: int = (
        15  # step: lr of 1-based epoch e is lr * lr_gamma ** (e // lr_step), as the reference
    )
    lr_gamma: float = 0.1
    label_smoothing: float = 0.0


@dataclass
class TrainConfig:
    """Everything a training run needs; the YAML files in ``configs/`` set these keys."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MixingConfig = field(default_factory=MixingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    epochs: int = 50
    batch_size: int = 32  # per process
    seed: int = 0
    amp: str = "bf16"  # bf16 | fp16 | none (GPU only; the CPU always runs float32)
    device: str = "auto"  # auto | cpu | cuda
    select_metric: str = "auto"  # metric on val that picks best.pt: auto | MaxBoxAccV2 | top1_acc
    eval_every: int = 1  # epochs between val evaluations
    cam_curve_interval: float = 0.01  # threshold grid of the per-epoch val localization
    max_steps_per_epoch: int = 0  # 0: whole epoch (a cap is for smoke tests and benchmarks)


def _from_dict(cls, data: dict, where: str):
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in (data or {}).items():
        if key not in known:
            raise ValueError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
        f = known[key]
        sub = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if sub is not None and dataclasses.is_dataclass(sub):
            if not isinstance(value, dict):
                raise ValueError(f"{where}: {key} must be a mapping")
            value = _from_dict(sub, value, f"{where}.{key}")
        kwargs[key] = value
    return cls(**kwargs)


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {dotted}: {key} is not a section")
    node[keys[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config and apply ``section.key=value`` overrides (values parsed as YAML)."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config {path} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a config must be a mapping")
    return config_from_dict(data, overrides, str(path or "config"))


def config_from_dict(
    data: dict, overrides: list[str] | None = None, where: str = "config"
) -> TrainConfig:
    """A config from a (nested) dict, e.g. the one a checkpoint carries, plus overrides."""
    import copy

    data = copy.deepcopy(data)
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value (e.g. optim.lr=0.01)")
        key, _, raw = item.partition("=")
        _set_dotted(data, key.strip(), yaml.safe_load(raw))
    return _from_dict(TrainConfig, data, where)


def config_to_dict(cfg: TrainConfig) -> dict:
    return asdict(cfg)


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    from .report import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
