"""Checkpoints and weight files are read with weights_only=True: a file that would run code is
refused with a sentence, and nothing in it runs."""

from __future__ import annotations

import pathlib

import pytest
import torch

from wsol.cli import main
from wsol.runtime import load_checkpoint
from wsol.serialization import load_plain


class _Touch:
    """Unpickling this calls Path.touch: the stand-in for arbitrary code."""

    def __init__(self, target: pathlib.Path):
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.touch, (self.target,))


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "config": {"model": {}}, "payload": _Touch(marker)}, path)
    return path, marker


def test_a_pickle_that_runs_code_is_refused_everywhere(evil, tmp_path, capsys, synth_root):
    path, marker = evil
    with pytest.raises(ValueError, match="refused: it holds objects that are not plain data"):
        load_checkpoint(path)
    with pytest.raises(ValueError, match="refused"):
        load_plain(path, what="pretrained weights")
    from wsol.models import create_model

    with pytest.raises(ValueError, match="pretrained weights .* refused"):
        create_model("smallcnn", 3, pretrained=path)
    assert main(["evaluate", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "Traceback" not in err
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(
        f"data: {{root: {synth_root}, workers: 0, crop_size: 32, resize_size: 36}}\n"
        "model: {name: smallcnn, pretrained: null}\ndevice: cpu\n"
    )
    (run / "last.pt").write_bytes(path.read_bytes())
    assert main(["train", "--resume", "--out", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"checkpoint {run / 'last.pt'} is refused" in err and "Traceback" not in err
    assert not marker.exists()  # nothing ran


@pytest.mark.parametrize("content", [b"", b"\x00" * 10, b"random bytes, not a zip"])
def test_broken_files_are_named_not_tracebacks(tmp_path, content):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"cannot read checkpoint {path}"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.pt")


def test_a_truncated_checkpoint_is_named(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.zeros(1000)}, "config": {}}, good)
    assert load_checkpoint(good)["model"]["w"].shape == (1000,)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="not a complete PyTorch file"):
        load_checkpoint(cut)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a wsol checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
