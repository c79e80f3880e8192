"""Reading PyTorch files safely: ``torch.load(weights_only=True)`` only, with a sentence (not a
traceback) naming the file when it cannot or must not be read."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch


def load_plain(path: str | Path, map_location="cpu", what: str = "checkpoint"):
    """The object saved in ``path`` if it holds only tensors and plain data (numbers, strings,
    lists, tuples, dicts): nothing in the file can run code while it is read.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file needs more than plain data (refused), or is not a complete
            PyTorch file (truncated, random bytes, a folder).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "global" not in str(err).lower():  # not a forbidden object: a damaged pickle
            raise ValueError(
                f"cannot read {what} {path}: it is not a complete PyTorch file (its pickle is "
                "damaged)"
            ) from None
        reason = _global_named(str(err))
        raise ValueError(
            f"{what} {path} is refused: it holds objects that are not plain data (tensors, "
            "numbers, strings, lists, dicts), and loading those could run code; wsol's own "
            f"files never do{reason}"
        ) from None
    except Exception as err:  # noqa: BLE001 - a damaged file can fail in any of torch's readers
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"cannot read {what} {path}: it is not a complete PyTorch file ({reason})"
        ) from None


def _global_named(message: str) -> str:
    """`` (it needs NAME)`` from torch's weights-only error message, or ``""``."""
    import re

    found = re.search(r"GLOBAL (\S+)", message)
    return f" (it needs {found.group(1)})" if found else ""
