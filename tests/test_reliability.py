"""Clumsy and hostile inputs: a sentence naming the problem, never a silent wrong result."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from wsol.cli import main
from wsol.config import load_config
from wsol.train import train

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _small(root, **extra) -> list[str]:
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


def test_16_bit_images_are_scaled_not_clipped_to_white(tmp_path):
    from wsol.data.dataset import to_rgb

    ramp = np.linspace(0, 65535, 40 * 30).reshape(30, 40).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    Image.fromarray((ramp // 257).astype(np.uint8)).save(tmp_path / "flat.png")
    with Image.open(tmp_path / "deep.png") as deep, Image.open(tmp_path / "flat.png") as flat:
        assert deep.mode.startswith("I")
        got, want = np.asarray(to_rgb(deep)), np.asarray(flat.convert("RGB"))
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert got.mean() == pytest.approx(127.5, abs=1.0)  # PIL's convert("RGB") gives ~254


def test_a_checkpoint_is_refused_on_data_with_other_classes(tmp_path, capsys):
    from wsol.data import SynthSpec, make_synthetic

    four, three = tmp_path / "four", tmp_path / "three"
    make_synthetic(four, SynthSpec(classes=4, train=16, test=8, size=32, seed=1), progress=False)
    make_synthetic(three, SynthSpec(classes=3, train=12, test=6, size=32, seed=1), progress=False)
    train(load_config(None, _small(four)), tmp_path / "run", progress=False)
    code = main(["evaluate", str(tmp_path / "run"), "--data", str(three), "--quiet",
                 "--workers", "0"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "classifies 4 classes" in err and "has 3" in err and "Traceback" not in err


def test_an_empty_split_is_an_error_not_nan(tmp_path, capsys):
    from wsol.data.records import DatasetSplit
    from wsol.evaluate import evaluate_model
    from wsol.models import create_model

    empty = DatasetSplit(name="X", split="test", records=[])
    with pytest.raises(ValueError, match="test split of X has no image"):
        evaluate_model(create_model("smallcnn", 3), empty, progress=False)
    meta = tmp_path / "meta" / "test"
    meta.mkdir(parents=True)
    for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"):
        (meta / name).write_text("")
    assert main(["data", "check", str(meta), "--quiet"]) == 1
    assert "lists no image" in capsys.readouterr().out
