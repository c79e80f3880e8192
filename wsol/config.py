"""Training configuration: dataclasses, read from YAML, overridden by ``key=value`` arguments.

A run folder keeps the resolved config as ``config.yaml``, so every run can be rebuilt and
evaluated from its folder alone.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .methods import MethodConfig, create_method
from .methods.base import method_section
from .models import list_models
from .runtime import atomic_write_text
from .yamlcheck import ConfigError, check_plain_yaml


@dataclass
class DataConfig:
    """Where the data are and how images are prepared.

    ``format``: ``wsol`` (``metadata`` holds train/, val/, test/ in the wsolevaluation layout;
    image ids are relative to ``root``: the reference's own splits, e.g. CUB's separate val
    images), ``cub`` (native CUB-200-2011 root: ``train`` is the official training split,
    ``test`` the official test split, and there is no ``val`` unless ``val_per_class`` > 0 holds
    that many training images per class out of ``train``) or ``imagenet`` (``root`` with train/
    and val/; ``annotations``: val XML folder or LOC_val_solution.csv; val and test are both
    ILSVRC val unless ``metadata`` is given). With ``metadata``, ``val_per_class`` keeps that
    many val images per class as the reference's ``num_val_sample_per_class`` (OpenImages: 5 of
    its 25) and ``proxy_train`` trains on ``train/image_ids_proxy.txt`` (the reference's
    ``proxy_training_set``, ILSVRC).
    """

    format: str = "cub"
    root: str = ""
    metadata: str | None = None
    masks: str | None = None
    annotations: str | None = None
    # cub: > 0 holds this many training images per class out as val; wsol / imagenet with
    # metadata: > 0 keeps this many of the val split's images per class, chosen with the run's
    # seed as the reference's num_val_sample_per_class (OpenImages: 5 of 25)
    val_per_class: int = 0
    proxy_train: bool = (
        False  # train on train/image_ids_proxy.txt (the reference's proxy_training_set)
    )
    resize_size: int = 256  # train: resize to this square, then random crop
    crop_size: int = 224  # train crop; val/test: resize straight to this square
    workers: int = 4
    skip_bad_images: bool = False
    allow_outside_root: bool = False  # accept image ids / mask paths outside root (absolute, ..)
    # train images: cpu (decoded and augmented by the loader's workers, PIL) or device (the files'
    # bytes are read by the workers and decoded + augmented on the run's device: torchvision's
    # decode_jpeg on the GPU; the same draws as the cpu path, see wsol/data/dataset.py)
    decode: str = "cpu"


@dataclass
class ModelConfig:
    name: str = "resnet50"
    pretrained: str | None = "torchvision"  # torchvision | PATH | null
    large_feature_map: bool = False  # one stage less downsampling: 28 x 28 CAMs (reference option)
    keep_pretrained_classifier: bool = False  # ResNets on ImageNet: keep the 1000-class fc
    channels_last: bool = False
    # vision transformers: stochastic depth (timm's drop_path_rate; TS-CAM's and DeiT's 0.1)
    drop_path_rate: float = 0.0


@dataclass
class OptimConfig:
    # sgd (the reference's: momentum, Nesterov, weight decay on every parameter) or adamw
    # (torch's AdamW, betas (0.9, 0.999), eps 1e-8; no weight decay on biases, 1-D parameters
    # and the model's own exclusions such as a ViT's position embedding and class token, as
    # timm's create_optimizer, which TS-CAM trains with)
    optimizer: str = "sgd"
    lr: float = 1.7e-4  # backbone
    head_lr_mult: float = 10.0  # head (new layers) lr = lr * head_lr_mult
    # which parameters train at the head rate: "model" (the model's head layers, as the
    # reference's main.py groups them: e.g. ResNet-50's layer4 and fc) or "classifier" (only the
    # final classifier, as the CutMix paper's Appendix B states for its ResNet-50)
    head_params: str = "model"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = True  # the reference's SGD (wsolevaluation main.py) uses Nesterov momentum
    scheduler: str = "step"  # step | cosine | none
    lr_step: int = (
        15  # step: lr of 1-based epoch e is lr * lr_gamma ** (e // lr_step), as the reference
    )
    lr_gamma: float = 0.1
    # steps: before 1-based epoch e the lr is multiplied by lr_gamma whenever e is a multiple of
    # any of these (TS-CAM's adjust_learning_rate_normal; [30] is step with lr_step 30)
    lr_steps: list[int] = field(default_factory=list)
    label_smoothing: float = 0.0


@dataclass
class TrainConfig:
    """Everything a training run needs; the YAML files in ``configs/`` set these keys."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    epochs: int = 50
    batch_size: int = 32  # per process
    seed: int = 0
    amp: str = "bf16"  # bf16 | fp16 | none (GPU only; the CPU always runs float32)
    device: str = "auto"  # auto | cpu | cuda
    select_metric: str = "auto"  # metric on val that picks best.pt (SELECT_METRICS)
    eval_every: int = 1  # epochs between val evaluations
    cam_curve_interval: float = 0.01  # threshold grid of the per-epoch val localization
    max_steps_per_epoch: int = 0  # 0: whole epoch (a cap is for smoke tests and benchmarks)
    # seconds a collective waits for the other ranks (torchrun); 0: 600 on GPUs, 180 on the CPU
    dist_timeout: float = 0.0
    tensorboard: bool = True  # TensorBoard events in RUN/tensorboard (scalars, CAM overlays)


def _coerce(value: Any, hint: Any, key: str) -> tuple[Any, str | None]:
    """``value`` as the field's type (``1e-4`` from YAML is a string: it becomes a float), or
    an error line."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        return (None, None) if type(None) in options else (value, f"{key}: must not be empty")
    kind = next(t for t in options if t is not type(None))
    if kind is bool:
        if isinstance(value, bool):
            return value, None
        return value, f"{key}: expected true or false, got {value!r}"
    if kind in (int, float):
        raw = value
        if isinstance(value, bool):
            return value, f"{key}: expected a number, got {value!r}"
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                what = "a whole number" if kind is int else "a number"
                return value, f"{key}: expected {what}, got {value!r}"
        if not isinstance(value, (int, float)) or value != value:
            return value, f"{key}: expected a number, got {value!r}"
        if not math.isfinite(value):  # inf, -inf, 1e400 (YAML reads it as a string: inf)
            what = "a whole number" if kind is int else "a finite number"
            return value, f"{key}: expected {what}, got {raw!r}"
        if kind is int:
            if float(value) != int(value):
                return value, f"{key}: expected a whole number, got {value!r}"
            return int(value), None
        return float(value), None
    if typing.get_origin(kind) is list:
        if not isinstance(value, list):
            return value, f"{key}: expected a list such as [10, 12], got {value!r}"
        (item,) = typing.get_args(kind)
        out = []
        for k, element in enumerate(value):
            element, error = _coerce(element, item, f"{key}[{k}]")
            if error:
                return value, error
            out.append(element)
        return out, None
    if kind is str:
        if isinstance(value, (dict, list)):
            return value, f"{key}: expected a string, got {value!r}"
        return str(value), None
    return value, None


def _from_dict(cls, data: dict, where: str, errors: list[str]):
    known = {f.name: f for f in fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in (data or {}).items():
        name = f"{where}.{key}" if where else str(key)
        if key not in known:
            errors.append(f"{name}: unknown key {key!r} (known here: {', '.join(known)})")
            continue
        f = known[key]
        sub = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if sub is not None and dataclasses.is_dataclass(sub):
            if not isinstance(value, dict):
                errors.append(f"{name}: must be a section (key: value lines)")
                continue
            if sub is MethodConfig:  # the named method's own parameters
                params, value, problems = method_section(value)
                errors += [f"{name}.{p}" for p in problems]
                if any(p.startswith("method: unknown method") for p in problems):
                    continue
                kwargs[key] = _from_dict(params, value, name, errors)
                continue
            kwargs[key] = _from_dict(sub, value, name, errors)
            continue
        value, error = _coerce(value, hints[key], name)
        if error:
            errors.append(error)
        else:
            kwargs[key] = value
    try:
        return cls(**kwargs)
    except ValueError as err:  # a section's own check (e.g. MethodConfig's method names)
        errors.append(f"{where}: {err}")
        return None


SELECT_METRICS = ("auto", "MaxBoxAccV2", "MaxBoxAcc", "PxAP", "top1_acc", "top5_acc")


#: (key, check, what it must be): the values a run can use
_CHECKS = (
    (
        "data.format",
        lambda c: c.data.format in ("cub", "wsol", "imagenet"),
        "cub, wsol or imagenet",
    ),
    ("data.val_per_class", lambda c: c.data.val_per_class >= 0, ">= 0"),
    ("data.decode", lambda c: c.data.decode in ("cpu", "device"), "cpu or device"),
    ("data.crop_size", lambda c: c.data.crop_size >= 1, ">= 1"),
    ("data.resize_size", lambda c: c.data.resize_size >= c.data.crop_size, ">= data.crop_size"),
    ("data.workers", lambda c: c.data.workers >= 0, ">= 0"),
    ("optim.optimizer", lambda c: c.optim.optimizer in ("sgd", "adamw"), "sgd or adamw"),
    ("optim.lr", lambda c: c.optim.lr > 0, "> 0"),
    ("optim.head_lr_mult", lambda c: c.optim.head_lr_mult > 0, "> 0"),
    (
        "optim.head_params",
        lambda c: c.optim.head_params in ("model", "classifier"),
        "model or classifier",
    ),
    ("optim.momentum", lambda c: 0 <= c.optim.momentum < 1, "in [0, 1)"),
    ("optim.weight_decay", lambda c: c.optim.weight_decay >= 0, ">= 0"),
    (
        "optim.scheduler",
        lambda c: c.optim.scheduler in ("step", "steps", "cosine", "none"),
        "step, steps, cosine or none",
    ),
    ("optim.lr_step", lambda c: c.optim.lr_step >= 1, ">= 1"),
    ("optim.lr_gamma", lambda c: c.optim.lr_gamma > 0, "> 0"),
    (
        "optim.lr_steps",
        lambda c: all(k >= 1 for k in c.optim.lr_steps)
        and (c.optim.scheduler != "steps" or bool(c.optim.lr_steps)),
        "epochs >= 1, at least one with scheduler steps",
    ),
    ("model.drop_path_rate", lambda c: 0 <= c.model.drop_path_rate < 1, "in [0, 1)"),
    ("optim.label_smoothing", lambda c: 0 <= c.optim.label_smoothing < 1, "in [0, 1)"),
    ("epochs", lambda c: c.epochs >= 1, ">= 1"),
    ("batch_size", lambda c: c.batch_size >= 1, ">= 1"),
    ("amp", lambda c: c.amp in ("bf16", "fp16", "none"), "bf16, fp16 or none"),
    ("device", lambda c: c.device in ("auto", "cpu", "cuda"), "auto, cpu or cuda"),
    ("select_metric", lambda c: c.select_metric in SELECT_METRICS, " | ".join(SELECT_METRICS)),
    ("eval_every", lambda c: c.eval_every >= 1, ">= 1"),
    ("cam_curve_interval", lambda c: 0 < c.cam_curve_interval < 1, "in (0, 1)"),
    ("max_steps_per_epoch", lambda c: c.max_steps_per_epoch >= 0, ">= 0"),
    ("dist_timeout", lambda c: c.dist_timeout >= 0, ">= 0 (0: 600 s on GPUs, 180 s on the CPU)"),
)


def check_config(cfg: TrainConfig) -> list[str]:
    """One line per value a run cannot use (types are checked when the config is read)."""
    errors = []
    for key, ok, must in _CHECKS:
        if not ok(cfg):
            section, _, name = key.rpartition(".")
            value = getattr(getattr(cfg, section) if section else cfg, name)
            errors.append(f"{key}: must be {must}, not {value!r}")
    errors += [f"method.{line}" for line in cfg.method.check()]  # the method's own checks
    if cfg.data.val_per_class > 0 and cfg.data.format == "imagenet" and not cfg.data.metadata:
        errors.append(
            "data.val_per_class: with data.format imagenet and no data.metadata, val is the test "
            "split (ILSVRC val), which is not capped: give data.metadata (ImageNetV2 as val) or "
            "leave data.val_per_class 0"
        )
    if cfg.data.proxy_train and not cfg.data.metadata:
        errors.append(
            "data.proxy_train: needs data.metadata (its train/image_ids_proxy.txt lists the proxy "
            "training set)"
        )
    if cfg.model.keep_pretrained_classifier and not create_method(cfg.method).keeps_classifier:
        errors.append(
            f"model.keep_pretrained_classifier: method {cfg.method.method} replaces the "
            "classifier (as the reference does), so there is none to keep; set it to false"
        )
    if cfg.model.name not in list_models():
        errors.append(
            f"model.name: unknown model {cfg.model.name!r} (known: {', '.join(list_models())})"
        )
    return errors


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {key} is not a section")
    node[keys[-1]] = value


def recipes_folder() -> Path:
    """Where the shipped recipes are: the installed package's ``wsol/configs`` (the repository's
    ``configs/``, which setuptools maps onto it), or a checkout's ``configs/``."""
    from importlib import resources

    try:
        folder = Path(str(resources.files("wsol.configs")))
        if folder.is_dir() and any(folder.glob("*.yaml")):
            return folder
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parent.parent / "configs"


def list_recipes() -> list[str]:
    """The names of the shipped recipes (``cub_resnet50_cutmix``, ...)."""
    return sorted(p.stem for p in recipes_folder().glob("*.yaml"))


def find_recipe(name: str | Path) -> Path:
    """A config file: ``name`` itself if it is a file, else the shipped recipe of that name
    (``cub_resnet50_cutmix`` or ``cub_resnet50_cutmix.yaml``); a name that is neither is an
    error that lists the closest recipes."""
    path = Path(name)
    if path.is_file():
        return path
    stem = path.name.removesuffix(".yaml")
    if path.parent == Path(".") and (recipes_folder() / f"{stem}.yaml").is_file():
        return recipes_folder() / f"{stem}.yaml"
    import difflib

    close = difflib.get_close_matches(stem, list_recipes(), n=4, cutoff=0.5)
    hint = f"; shipped recipes like it: {', '.join(close)}" if close else ""
    raise FileNotFoundError(
        f"config {name} is neither a file nor a shipped recipe{hint} (`wsol train --recipes` "
        "lists them all)"
    )


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config and apply ``section.key=value`` overrides (values parsed as YAML).

    Every key and value is checked before any work starts; :class:`ConfigError` lists every
    problem, one line each."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
            check_plain_yaml(text, str(path))
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ConfigError(f"{where}: not valid YAML ({problem})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not a text file") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a config must be a mapping of keys to values")
    return config_from_dict(data, overrides, str(path or "config"))


def config_from_dict(
    data: dict, overrides: list[str] | None = None, where: str = "config"
) -> TrainConfig:
    """A config from a (nested) dict, e.g. the one a checkpoint carries, plus overrides."""
    import copy

    data = copy.deepcopy(data)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. optim.lr=0.01)")
        key, _, raw = item.partition("=")
        check_plain_yaml(raw, f"override {key.strip()}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw  # a plain string, e.g. a path with a colon
        _set_dotted(data, key.strip(), value)
    errors: list[str] = []
    cfg = _from_dict(TrainConfig, data, "", errors)
    sections = (cfg.data, cfg.model, cfg.method, cfg.optim) if cfg is not None else (None,)
    if all(section is not None for section in sections):
        errors += check_config(cfg)  # keys with a type error kept their (valid) defaults
    if errors:
        lines = "\n  ".join(errors)
        raise ConfigError(f"{where}: {len(errors)} problem(s):\n  {lines}")
    return cfg


#: config keys that say where the data are and how a run is carried out, not what it trains:
#: a resumed run may change them, and seeds of one setting may differ in them
RUN_ONLY_KEYS = (
    "device",
    "dist_timeout",
    "tensorboard",
    "data.root",
    "data.metadata",
    "data.masks",
    "data.annotations",
    "data.workers",
    "data.skip_bad_images",
    "data.allow_outside_root",
)


def flatten(data: dict, prefix: str = "") -> dict:
    """A nested config dict as ``{"section.key": value}``."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


DATA_PATH_KEYS = ("root", "metadata", "masks", "annotations")


def anchor_data_paths(cfg: TrainConfig, workdir: str | Path | None, keep=()) -> TrainConfig:
    """``cfg`` with its relative data paths made relative to ``workdir`` (the folder a run was
    started in), so a run can be evaluated from anywhere; ``keep``: keys given anew (e.g. by
    ``--data``), which stay relative to the current folder."""
    if not workdir:
        return cfg
    changes = {}
    for key in DATA_PATH_KEYS:
        value = getattr(cfg.data, key)
        if value and key not in keep and not Path(value).is_absolute():
            changes[key] = str(Path(workdir) / value)
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **changes))


def config_to_dict(cfg: TrainConfig) -> dict:
    return asdict(cfg)


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
