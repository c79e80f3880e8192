"""One registry of WSOL models: ``@register_model``, ``list_models``, ``create_model``."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

_REGISTRY: dict[str, Callable] = {}


def register_model(fn: Callable) -> Callable:
    """Register a builder ``fn(num_classes) -> WSOLModel`` under its function name."""
    if fn.__name__ in _REGISTRY:
        raise ValueError(f"model {fn.__name__} is registered twice")
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, e.g. ``list_models('resnet*')``."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def model_builder(name: str) -> Callable:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(list_models())}") from None
