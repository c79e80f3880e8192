"""Configs are checked whole before any work: every bad key or value is one line naming it."""

from __future__ import annotations

import pytest
import torch

from wsol.cli import main
from wsol.config import ConfigError, load_config


def test_scientific_notation_is_a_number_everywhere(tmp_path):
    # PyYAML reads 1e-3 (no dot) as a string; a learning rate must still be a float
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1e-3\n  weight_decay: 5e-4\nepochs: 3\n")
    cfg = load_config(path, ["optim.head_lr_mult=1E1", "cam_curve_interval=1e-2"])
    assert cfg.optim.lr == 0.001 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.weight_decay == 0.0005 and cfg.optim.head_lr_mult == 10.0
    assert cfg.cam_curve_interval == 0.01 and cfg.epochs == 3
    assert load_config(None, ["optim.lr=1e-4"]).optim.lr == 1e-4


def test_every_problem_is_listed_with_its_key(tmp_path):
    bad = [
        "epochs=abc",
        "batch_size=2.5",
        "optim.lr=-1",
        "amp=fp8",
        "optim.lrr=1",
        "select_metric=best",
        "cam_curve_interval=1.5",
        "model.name=alexnet",
        "method.method=cutmix",  # (not a problem: the method whose parameters follow)
        "method.cutmix_prob=2",
        "data.val_per_class=-1",
        "optim.nesterov=maybe",
    ]
    with pytest.raises(ConfigError) as info:
        load_config(None, bad)
    message = str(info.value)
    for line in (
        "epochs: expected a whole number, got 'abc'",
        "batch_size: expected a whole number, got 2.5",
        "optim.lrr: unknown key 'lrr'",
        "optim.nesterov: expected true or false, got 'maybe'",
        "optim.lr: must be > 0, not -1.0",
        "amp: must be bf16, fp16 or none, not 'fp8'",
        "select_metric: must be",
        "cam_curve_interval: must be in (0, 1), not 1.5",
        "model.name: unknown model 'alexnet'",
        "method.cutmix_prob: must be in [0, 1], not 2.0",
        "data.val_per_class: must be >= 0, not -1",
    ):
        assert line in message, line
    assert message.count("\n") == len(bad) - 1  # a header and one line per problem
    with pytest.raises(ConfigError, match="epochs: must be >= 1, not 0"):
        load_config(None, ["epochs=0"])


def test_malformed_yaml_names_the_file_and_line(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("optim:\n  lr: 0.1\n  momentum: [0.9\nepochs: 3\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+: not valid YAML"):
        load_config(path)
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML" in err and "Traceback" not in err
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(tmp_path / "list.yaml")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_a_gpu_and_unmeasurable_select_metric_fail_before_work(synth_root, tmp_path):
    import shutil

    from wsol.train import train

    data = tmp_path / "data"  # the synthetic set without its masks
    shutil.copytree(synth_root, data, ignore=shutil.ignore_patterns("segmentations"))
    base = [f"data.root={data}", "data.workers=0", "model.name=smallcnn",
            "model.pretrained=null", "epochs=1"]  # fmt: skip
    with pytest.raises(ValueError, match="device cuda: PyTorch sees no GPU"):
        train(load_config(None, [*base, "device=cuda"]), tmp_path / "a", progress=False)
    cfg = load_config(None, [*base, "device=cpu", "data.val_per_class=2", "select_metric=PxAP"])
    with pytest.raises(ValueError, match="select_metric PxAP needs masks"):
        train(cfg, tmp_path / "b", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_steps_schedule_decays_at_every_multiple_of_any_step():
    # TS-CAM's adjust_learning_rate_normal (vasgaowei/TS-CAM lib/core/engine.py), called before
    # each 1-based epoch: ILSVRC's LR_STEPS [10, 12] over 20 epochs decays at 10, 12 and 20
    from wsol.train import lr_factor

    cfg = load_config(None, ["optim.scheduler=steps", "optim.lr_steps=[10, 12]", "epochs=20"])
    factors = [lr_factor(cfg, e - 1) for e in range(1, 21)]
    expected = [1.0] * 9 + [0.1, 0.1] + [0.01] * 8 + [0.001]
    assert factors == pytest.approx(expected)
    # a single step is the reference's step schedule
    one = load_config(None, ["optim.scheduler=steps", "optim.lr_steps=[30]", "epochs=60"])
    step = load_config(None, ["optim.scheduler=step", "optim.lr_step=30", "epochs=60"])
    assert [lr_factor(one, e) for e in range(60)] == [lr_factor(step, e) for e in range(60)]


def test_list_keys_are_checked_element_by_element():
    with pytest.raises(ConfigError, match=r"optim.lr_steps\[1\]: expected a whole number"):
        load_config(None, ["optim.scheduler=steps", "optim.lr_steps=[10, x]"])
    with pytest.raises(ConfigError, match="optim.lr_steps: expected a list"):
        load_config(None, ["optim.lr_steps=10"])
    with pytest.raises(ConfigError, match="optim.lr_steps: must be epochs >= 1, at least one"):
        load_config(None, ["optim.scheduler=steps"])
    with pytest.raises(ConfigError, match="optim.optimizer: must be sgd or adamw"):
        load_config(None, ["optim.optimizer=adam"])
