"""Shared fixtures: tiny data sets written in the real on-disk formats."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def pytest_configure(config):
    # under pytest-xdist (`pytest -n auto`, the README's command) the workers share the cores:
    # one torch thread each, and one OpenMP thread in the processes the tests start, instead of
    # every worker's threads contending for every core
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        import torch

        torch.set_num_threads(1)


def write_image(path: Path, size: tuple[int, int], seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def write_tiny_cub(root: Path) -> Path:
    """Four images of two classes; image 4 has two boxes; 1 and 3 are training images."""
    names = ["001.Alpha/a_1.jpg", "001.Alpha/a_2.jpg", "002.Beta/b_1.jpg", "002.Beta/b_2.jpg"]
    sizes = [(40, 30), (50, 40), (30, 30), (60, 45)]
    for i, (name, size) in enumerate(zip(names, sizes)):
        write_image(root / "images" / name, size, seed=i)
    (root / "classes.txt").write_text("1 001.Alpha\n2 002.Beta\n")
    (root / "images.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(names)))
    (root / "image_class_labels.txt").write_text("1 1\n2 1\n3 2\n4 2\n")
    (root / "train_test_split.txt").write_text("1 1\n2 0\n3 1\n4 0\n")
    (root / "bounding_boxes.txt").write_text(
        "1 2.0 3.0 20.0 10.0\n2 0.0 0.0 50.0 40.0\n3 5.0 5.0 10.0 10.0\n4 1.0 2.0 3.0 4.0\n4 10.0 10.0 20.0 20.0\n"
    )
    return root


@pytest.fixture
def tiny_cub(tmp_path: Path) -> Path:
    return write_tiny_cub(tmp_path / "cub")


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    from wsol.data.synth import SynthSpec, make_synthetic

    root = tmp_path_factory.mktemp("synth")
    make_synthetic(root, SynthSpec(classes=4, train=24, test=12, size=48, seed=3), progress=False)
    return root


def free_port() -> int:
    """A TCP port that is free on this machine now (for torchrun's rendezvous in tests)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_run(root: Path, **extra) -> list[str]:
    """``key=value`` overrides of a seconds-long CPU run on a tiny data set: the small CNN on
    32 px crops, no AMP, no workers; ``extra`` adds or replaces keys."""
    base = {
        "data.root": str(root),
        "data.resize_size": 36,
        "data.crop_size": 32,
        "data.workers": 0,
        "model.name": "smallcnn",
        "model.pretrained": "null",
        "batch_size": 8,
        "epochs": 1,
        "amp": "none",
        "device": "cpu",
        "cam_curve_interval": 0.05,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]
