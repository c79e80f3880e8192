import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import cpu_run

from wsol.config import load_config
from wsol.train import train

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory) -> Path:
    from wsol.data import SynthSpec, make_synthetic

    root = tmp_path_factory.mktemp("train_synth")
    make_synthetic(root, SynthSpec(classes=4, train=96, test=16, size=32, seed=1), progress=False)
    return root


def _overrides(root: Path, **extra) -> list[str]:
    base = {"data.val_per_class": 2, "optim.lr": 0.05, "optim.head_lr_mult": 1,
            "optim.scheduler": "none", "batch_size": 16, "epochs": 3}  # fmt: skip
    return cpu_run(root, **{**base, **extra})


def _log(run: Path) -> list[dict]:
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("method", ["base", "cutmix"])
def test_training_runs_and_loss_falls(tiny_synth, tmp_path, method):
    cfg = load_config(None, _overrides(tiny_synth, **{"method.method": method}))
    train(cfg, tmp_path / "run", progress=False)
    rows = _log(tmp_path / "run")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert float(rows[-1]["val_MaxBoxAccV2"]) >= 0 and float(rows[-1]["val_top1_acc"]) >= 0
    for name in ("config.yaml", "last.pt", "best.pt"):
        assert (tmp_path / "run" / name).is_file()
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.method.method == method and saved.data.root == str(tiny_synth)
    assert not list((tmp_path / "run").glob(".*tmp*"))  # atomic writes leave no temporaries


def test_resume_continues_exactly(tiny_synth, tmp_path):
    straight = load_config(None, _overrides(tiny_synth, **{"method.method": "cutmix"}))
    train(straight, tmp_path / "a", progress=False)
    first = load_config(None, _overrides(tiny_synth, **{"method.method": "cutmix", "epochs": 2}))
    train(first, tmp_path / "b", progress=False)
    train(straight, tmp_path / "b", resume=True, progress=False)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 2
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0, msg=key)
    assert [r["epoch"] for r in _log(tmp_path / "b")] == ["1", "2", "3"]
    with pytest.raises(FileExistsError):
        train(straight, tmp_path / "b", progress=False)  # never overwrite a run by accident


def _wsol(*args) -> list[str]:
    return [sys.executable, "-m", "wsol.cli", *args]


def test_resume_after_a_kill_mid_run(tiny_synth, tmp_path):
    run = tmp_path / "run"
    args = [
        "train",
        "--out",
        str(run),
        "--quiet",
        *_overrides(tiny_synth, epochs=6, **{"data.val_per_class": 0}),
    ]
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("{}\n")
    proc = subprocess.Popen(_wsol(args[0], str(cfg_file), *args[1:]))
    deadline = time.time() + 300
    while not (run / "last.pt").exists():
        assert proc.poll() is None, "training ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = torch.load(run / "last.pt", weights_only=False)["epoch"]
    assert done < 5  # killed before the end
    from wsol.cli import main

    assert main(["train", "--resume", "--out", str(run), "--quiet"]) == 0  # here: no new process
    assert [int(r["epoch"]) for r in _log(run)] == [1, 2, 3, 4, 5, 6]
    assert torch.load(run / "last.pt", weights_only=False)["epoch"] == 5


def test_unreadable_image_is_named_or_skipped(tiny_synth, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_synth, root)
    bad = sorted((root / "images").rglob("*.jpg"))[0]
    bad.write_bytes(b"broken")
    cfg = load_config(None, _overrides(root, epochs=1, **{"data.val_per_class": 0}))
    with pytest.raises(RuntimeError, match=bad.name):
        train(cfg, tmp_path / "run", progress=False)
    cfg = load_config(
        None,
        _overrides(root, epochs=1, **{"data.val_per_class": 0, "data.skip_bad_images": "true"}),
    )
    train(cfg, tmp_path / "run2", progress=False)
    assert _log(tmp_path / "run2")[0]["skipped_images"] == "1"


def test_missing_data_fails_before_any_work(tmp_path):
    cfg = load_config(None, _overrides(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="unknown key 'lrr'"):
        load_config(None, ["optim.lrr=1"])


@pytest.mark.parametrize(
    "path",
    sorted(Path(__file__).parent.parent.joinpath("configs").glob("*.yaml")),
    ids=lambda p: p.name,
)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    from wsol.models import list_models

    assert cfg.model.name in list_models()
    from wsol.methods import list_methods

    assert cfg.method.method in list_methods()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("amp", [torch.bfloat16, torch.float16])
def test_amp_step_on_gpu(amp):
    from wsol.mixing import MixingConfig
    from wsol.models import create_model
    from wsol.train import train_step

    model = create_model("resnet18", 5).cuda().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    x = torch.randn(8, 3, 64, 64, device="cuda").to(memory_format=torch.channels_last)
    y = torch.randint(0, 5, (8,), device="cuda")
    loss, _ = train_step(
        model, x, y, opt, MixingConfig("cutmix"), torch.Generator().manual_seed(0), scaler, amp
    )
    assert torch.isfinite(loss)


def test_config_reference_documents_every_key():
    from dataclasses import fields, is_dataclass

    from wsol.config import TrainConfig

    doc = (Path(__file__).parent.parent / "docs" / "config.md").read_text()
    for f in fields(TrainConfig):
        section = f.default_factory() if f.default_factory is not dataclasses_missing() else None
        names = [g.name for g in fields(section)] if is_dataclass(section) else [f.name]
        for name in names:
            assert f"| `{name}` |" in doc, name
    # every method's own parameters, in its row of the method table
    from wsol.methods import list_methods
    from wsol.methods.base import method_fields

    for method in list_methods():
        if method.startswith("probe"):
            continue
        for name in method_fields(method)[1:]:
            assert f"`{name}`" in doc, (method, name)


def dataclasses_missing():
    import dataclasses

    return dataclasses.MISSING


def test_a_run_folder_in_use_is_refused_with_the_holders_pid(tiny_synth, tmp_path):
    from wsol.runtime import Dist, RunLock

    run = tmp_path / "run"
    cfg = load_config(None, _overrides(tiny_synth, epochs=1))
    with RunLock(run, Dist()):  # another training holds the folder
        with pytest.raises(FileExistsError, match=f"in use by pid {os.getpid()} on"):
            train(cfg, run, progress=False)
    assert not (run / "last.pt").exists()
    train(cfg, run, progress=False)  # the lock went with its holder
    assert (run / "last.pt").is_file()


def test_resume_repairs_a_stale_best_and_removes_temporaries(tiny_synth, tmp_path):
    from wsol.evaluate import evaluate_checkpoint

    run = tmp_path / "run"
    cfg = load_config(None, _overrides(tiny_synth, epochs=2))
    train(cfg, run, progress=False)
    last = torch.load(run / "last.pt", weights_only=True)
    # a kill between writing last.pt (which records its own epoch as the best) and best.pt
    last["best"] = {"metric": "MaxBoxAccV2", "value": 101.0, "epoch": last["epoch"] + 1}
    torch.save(last, run / "last.pt")
    stale = dict(last, epoch=0)
    torch.save(stale, run / "best.pt")
    (run / ".last.pt.tmp4242").write_bytes(b"partial")
    with pytest.raises(ValueError, match="holds epoch 1, but the best epoch was 2"):
        evaluate_checkpoint(run, tmp_path / "e", checkpoint="best", progress=False)
    train(cfg, run, resume=True, progress=False)
    assert torch.load(run / "best.pt", weights_only=True)["epoch"] == last["epoch"]
    assert not list(run.glob(".*tmp*"))
    evaluate_checkpoint(run, tmp_path / "e", checkpoint="best", progress=False, echo=False)


def test_resume_refuses_recipe_changes_and_records_the_allowed_ones(tiny_synth, tmp_path, capsys):
    from wsol.cli import main

    run = tmp_path / "run"
    cfg = load_config(None, _overrides(tiny_synth, epochs=2))
    train(cfg, run, progress=False)
    before = (run / "config.yaml").read_text()
    code = main(["train", "--resume", "--out", str(run), "--quiet", "optim.lr=0.5", "epochs=3"])
    assert code == 2
    err = capsys.readouterr().err
    assert "optim.lr 0.05 -> 0.5" in err and "Traceback" not in err
    assert (run / "config.yaml").read_text() == before  # nothing changed, nothing trained
    other = tmp_path / "other.yaml"
    other.write_text("batch_size: 4\n")
    assert main(["train", str(other), "--resume", "--out", str(run), "--quiet",
                 *_overrides(tiny_synth, epochs=3, batch_size=4)]) == 2  # fmt: skip
    assert "batch_size 16 -> 4" in capsys.readouterr().err
    # extending epochs is allowed, trains the added epochs, and is recorded
    assert main(["train", "--resume", "--out", str(run), "--quiet", "epochs=3"]) == 0
    assert [int(r["epoch"]) for r in _log(run)] == [1, 2, 3]
    assert load_config(run / "config.yaml").epochs == 3
    import yaml

    history = yaml.safe_load((run / "config_history.yaml").read_text())
    assert history[0]["resumed_after_epoch"] == 2
    assert history[0]["changes"] == [{"key": "epochs", "was": 2, "now": 3}]
    assert main(["train", "--resume", "--out", str(run), "--quiet", "epochs=2"]) == 2
    assert "3 epochs are already done" in capsys.readouterr().err


def test_train_test_evaluates_the_last_checkpoint_on_test(synth_root, tmp_path, capsys):
    from wsol.cli import main

    run = tmp_path / "run"
    overrides = cpu_run(synth_root, **{"data.val_per_class": 2, "cam_curve_interval": 0.1})
    config = Path(__file__).parent.parent / "configs" / "synth_smallcnn_base.yaml"
    assert main(["train", str(config), *overrides, "--out", str(run), "--quiet", "--test"]) == 0
    metrics = json.loads((run / "eval_test" / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["context"]["epoch"] == 1
    assert metrics["context"]["checkpoint"] == str((run / "last.pt").resolve())
    assert "checkpoint:" in capsys.readouterr().out


def test_a_run_keeps_train_log_and_tensorboard_events(synth_root, tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from wsol.cli import main

    run = tmp_path / "run"
    config = Path(__file__).parent.parent / "configs" / "synth_smallcnn_base.yaml"
    overrides = cpu_run(synth_root, **{"data.val_per_class": 2, "epochs": 2, "eval_every": 1})
    assert main(["train", str(config), *overrides, "--out", str(run), "--quiet"]) == 0
    printed = capsys.readouterr().out
    log = (run / "train.log").read_text()
    for line in printed.strip().splitlines():  # everything printed is in train.log
        assert line.strip() in log, line
    assert "epoch 2:" in printed and "run ETA" in printed  # --quiet keeps the epoch lines
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    assert {"train/loss", "train/lr", "train/images_per_s", "val/MaxBoxAccV2"} <= set(
        tags["scalars"]
    )
    losses = [e.value for e in events.Scalars("train/loss")]
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert losses == pytest.approx([float(r["train_loss"]) for r in rows])
    overlays = events.Images("val/cam_overlays")
    assert [e.step for e in overlays] == [1, 2]
    # large enough to read: every tile at least 224 px (32 px crops upscaled 7x), four a row
    assert overlays[0].height >= 224 and overlays[0].width >= 4 * 224


def test_a_run_made_with_a_relative_data_root_evaluates_from_anywhere(
    synth_root, tmp_path, monkeypatch, capsys
):
    from wsol.cli import main

    made_in = tmp_path / "project"
    made_in.mkdir()
    shutil.copytree(synth_root, made_in / "data")
    monkeypatch.chdir(made_in)
    config = Path(__file__).parent.parent / "configs" / "synth_smallcnn_base.yaml"
    overrides = cpu_run(Path("data"), **{"data.val_per_class": 2, "cam_curve_interval": 0.1})
    assert main(["train", str(config), *overrides, "--out", "run", "--quiet"]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run = made_in / "run"
    args = ["evaluate", str(run), "--quiet", "--workers", "0", "--out", "e1"]
    assert main(args) == 0
    metrics = json.loads((elsewhere / "e1" / "metrics.json").read_text())
    assert metrics["context"]["data"]["root"] == str(made_in / "data")
    # the data moved: a sentence that says so and names --data
    (made_in / "data").rename(made_in / "moved")
    capsys.readouterr()
    assert main([*args[:-1], "e2"]) != 0
    err = capsys.readouterr().err
    assert "are not where they were" in err and "--data ROOT" in err
    assert main([*args[:-1], "e3", "--data", str(made_in / "moved")]) == 0


@pytest.mark.parametrize(
    "scheduler,expected",
    [
        # cosine 0.05 over 2 epochs: 0.05, 0.025; extended to 4, epochs 3 and 4 are the 4-epoch
        # schedule's: 0.05 * 0.5 * (1 + cos(pi * e / 4)) for e = 2, 3 -> 0.025, 0.0073223
        ("cosine", [0.05, 0.025, 0.025, 0.05 * 0.5 * (1 + math.cos(math.pi * 3 / 4))]),
        # step (lr_step 2, gamma 0.1): 1-based epoch e at 0.05 * 0.1 ** (e // 2), any length
        ("step", [0.05, 0.005, 0.005, 0.0005]),
        ("none", [0.05, 0.05, 0.05, 0.05]),
    ],
)
def test_a_resumed_run_extended_follows_the_longer_schedule(
    tiny_synth, tmp_path, scheduler, expected
):
    extra = {"optim.scheduler": scheduler, "optim.lr_step": 2, "epochs": 2, "data.val_per_class": 0}
    cfg = load_config(None, _overrides(tiny_synth, **extra))
    train(cfg, tmp_path / "run", progress=False, echo=False)
    longer = load_config(None, _overrides(tiny_synth, **{**extra, "epochs": 4}))
    train(longer, tmp_path / "run", resume=True, progress=False, echo=False)
    lrs = [float(r["lr"]) for r in _log(tmp_path / "run")]
    assert lrs == pytest.approx(expected, rel=1e-6)
    assert min(lrs) > 0  # never an epoch at lr 0 in the middle of a run


def test_a_resume_says_what_changed(tiny_synth, tmp_path, capsys):
    cfg = load_config(None, _overrides(tiny_synth, epochs=1, **{"data.val_per_class": 0}))
    train(cfg, tmp_path / "run", progress=False)
    longer = load_config(
        None, _overrides(tiny_synth, epochs=2, eval_every=2, **{"data.val_per_class": 0})
    )
    capsys.readouterr()
    train(longer, tmp_path / "run", resume=True, progress=False)
    out = capsys.readouterr().out
    assert "changed on resume: epochs 1 -> 2" in out
    assert "changed on resume: eval_every 1 -> 2" in out
    runtime = yaml.safe_load((tmp_path / "run" / "runtime.yaml").read_text())
    # one way of running so far: 1 process, batch 16, on the CPU, with today's versions
    assert len(runtime) == 1 and runtime[0]["world_size"] == 1
    assert runtime[0]["global_batch"] == 16 and runtime[0]["device"] == "cpu"
    assert runtime[0]["torch"] == str(torch.__version__) and runtime[0]["wsol"]
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert ckpt["runtime"] == runtime


def test_overlay_tiles_are_upscaled_and_carry_their_boxes():
    from wsol.tracking import overlay_grid

    images = torch.zeros(2, 3, 32, 32)
    cams = torch.zeros(2, 4, 4)
    cams[:, 1:3, 1:3] = 1.0
    boxes = [np.array([[2, 2, 20, 20]]), np.zeros((0, 4))]
    grid = overlay_grid(images, cams, boxes, threshold=0.5)
    assert grid.shape[0] == 3 and grid.shape[1] >= 224 and grid.shape[2] >= 2 * 224
    # the GT box of the first image, white, at 7x (the tile starts after the 4-px padding)
    assert torch.allclose(grid[:, 4 + 2 * 7, 4 + 10 * 7], torch.ones(3))
    # a vermillion predicted box on each tile
    red = (grid[0] > 0.8) & (grid[1] > 0.3) & (grid[1] < 0.45) & (grid[2] < 0.05)
    assert red.any()
