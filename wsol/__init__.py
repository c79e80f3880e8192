"""wsol: weakly supervised object localization with CutMix and baselines.

The data flow one way through the package, and so do its imports (docs/architecture.md):
records on disk (:mod:`wsol.data`) -> methods (:mod:`wsol.methods`) and models
(:mod:`wsol.models`) -> CAMs (:mod:`wsol.cam`) -> boxes (:mod:`wsol.localize`) -> metrics
(:mod:`wsol.metrics`) -> training and evaluation (:mod:`wsol.train`, :mod:`wsol.evaluate`) ->
tables, curves and galleries (:mod:`wsol.report`, :mod:`wsol.gallery`) and hyperparameter
searches (:mod:`wsol.sweep`) -> :mod:`wsol.cli`.

The public Python API is listed in ``__all__`` (docs/api.md has an example of each). Names are
imported on first use, so that ``import wsol`` and the command line start fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> (module, attribute); ``train`` is the module :mod:`wsol.train`, which can be
#: called as the function ``wsol.train.train``
_PUBLIC = {
    "LocalizationEvaluator": ("metrics", "LocalizationEvaluator"),
    "MethodConfig": ("methods", "MethodConfig"),
    "Protocol": ("metrics", "Protocol"),
    "TrainConfig": ("config", "TrainConfig"),
    "build_gallery": ("gallery", "build_gallery"),
    "compare_runs": ("report", "compare_runs"),
    "create_method": ("methods", "create_method"),
    "create_model": ("models", "create_model"),
    "evaluate_cams": ("evaluate", "evaluate_cams"),
    "evaluate_checkpoint": ("evaluate", "evaluate_checkpoint"),
    "evaluate_model": ("evaluate", "evaluate_model"),
    "extract": ("cam", "extract"),
    "ground_truth": ("metrics", "ground_truth"),
    "list_methods": ("methods", "list_methods"),
    "list_models": ("models", "list_models"),
    "load_config": ("config", "load_config"),
    "load_split": ("data.splits", "load_split"),
    "named_protocol": ("metrics", "named_protocol"),
    "read_cub": ("data", "read_cub"),
    "read_imagenet_train": ("data", "read_imagenet_train"),
    "read_imagenet_val": ("data", "read_imagenet_val"),
    "read_wsol_metadata": ("data", "read_wsol_metadata"),
    "run_sweep": ("sweep", "run_sweep"),
    "save_result": ("evaluate", "save_result"),
    "train": ("train", None),
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'wsol' has no attribute {name!r}")
    module, attr = _PUBLIC[name]
    value = importlib.import_module(f".{module}", __name__)
    return value if attr is None else getattr(value, attr)


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
