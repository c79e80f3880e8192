"""The layout of a run folder, in one place.

A run folder (``wsol train --out RUN``) holds ``config.yaml`` (the resolved config),
``splits.yaml`` (what it trained and chose on), ``log.csv`` (one row per epoch), ``last.pt`` and
``best.pt``, ``config_history.yaml`` (changes made on resume), ``.lock`` (while a training runs)
and one folder per kind of evaluation: ``eval_<split>``, with a part for each choice that is not
the default (``eval_test_cutmix2019``, ``eval_test_scorecam_best``, ``eval_test_valthr``: see
``wsol.evaluate.eval_folder_name``), each with ``metrics.json``, ``metrics.csv``,
``per_image.csv``, ``val/`` (with ``--val-threshold``) and ``cams/<image_id>.npy`` (with
``--save-cams``); each is written whole (staged as ``.<name>.partial`` beside it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .data.records import leaves_root


@dataclass(frozen=True)
class RunDir:
    """A run folder and the paths of everything in it."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def splits(self) -> Path:
        return self.path / "splits.yaml"

    @property
    def log(self) -> Path:
        return self.path / "log.csv"

    @property
    def history(self) -> Path:
        return self.path / "config_history.yaml"

    @property
    def lock(self) -> Path:
        return self.path / ".lock"

    def checkpoint(self, which: str = "last") -> Path:
        """``last.pt`` or ``best.pt``."""
        return self.path / f"{which}.pt"

    def eval_dir(self, split: str = "test", protocol: str = "wsolevaluation") -> Path:
        """Where ``wsol evaluate RUN`` writes an evaluation of ``split`` by default."""
        suffix = "" if protocol == "wsolevaluation" else f"_{protocol}"
        return self.path / f"eval_{split}{suffix}"

    @staticmethod
    def of(checkpoint_or_folder: str | Path) -> RunDir:
        """The run folder of a checkpoint file or of a folder."""
        path = Path(checkpoint_or_folder)
        return RunDir(path if path.is_dir() else path.parent)


def resolve_eval_dir(path: str | Path) -> Path:
    """An evaluation folder, given itself or a run folder: its ``eval_test`` (the default
    evaluation), else its only evaluation; a run with several others must name one."""
    path = Path(path)
    if (path / "metrics.json").is_file():
        return path
    for name in ("eval_test", "eval_val"):
        if (path / name / "metrics.json").is_file():
            return path / name
    found = sorted(p for p in path.glob("eval_*") if (p / "metrics.json").is_file())
    if len(found) == 1:
        return found[0]
    if found:
        raise ValueError(
            f"{path} holds {len(found)} evaluations and no eval_test: give one of them "
            f"({', '.join(str(p) for p in found[:6])})"
        )
    raise FileNotFoundError(f"{path} holds no metrics.json (run `wsol evaluate` on it first)")


def cam_path(cams_dir: str | Path, image_id: str) -> Path:
    """Where the CAM of ``image_id`` lies: ``CAM_DIR/<image_id>.npy`` (the reference layout).

    An id that would leave ``CAM_DIR`` (absolute, or with ``..``) is refused: CAMs are never
    read from or written to anywhere else."""
    if leaves_root(image_id):
        raise ValueError(f"image id {image_id} leaves the CAM folder {cams_dir}: refused")
    return Path(cams_dir) / (image_id + ".npy")
