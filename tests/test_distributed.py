"""torch.distributed on the CPU (gloo, 2 processes): exact resume, and no hang when a rank
stops."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import free_port

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_evaluation_leaves_the_training_threads_alone():
    # numba's OpenMP layer used to reset the process's OpenMP threads (shared with PyTorch), so
    # epochs after the first evaluation ran with other summation orders than a fresh process
    code = textwrap.dedent(
        """
        import numpy as np, torch
        from wsol.metrics import BoxAccumulator, GroundTruth, Protocol
        before = torch.get_num_threads()
        gt = {"a": GroundTruth(np.array([[1.0, 1, 50, 50]]), (224, 224))}
        acc = BoxAccumulator(gt, Protocol(cam_curve_interval=0.05))
        acc.update(np.random.default_rng(0).random((1, 224, 224)), ["a"])
        print(before, torch.get_num_threads())
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("NUMBA_THREADING_LAYER", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["1", "1"], out.stderr


def _torchrun(*args, env=None, timeout=300):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           f"--master_port={free_port()}", "-m", "wsol.cli", *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(cmd, env=env, timeout=timeout, capture_output=True, text=True)


def test_a_resumed_two_process_run_equals_an_uninterrupted_one(synth_root, tmp_path):
    overrides = [f"data.root={synth_root}", "data.val_per_class=2", "data.resize_size=36",
                 "data.crop_size=32", "data.workers=0", "model.name=smallcnn",
                 "model.pretrained=null", "optim.scheduler=none", "batch_size=8", "amp=none",
                 "device=cpu", "cam_curve_interval=0.05", "method.method=cutmix"]  # fmt: skip
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("{}\n")
    done = _torchrun(
        "train", str(cfg), "--out", str(tmp_path / "a"), "--quiet", *overrides, "epochs=2"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # a two-process run writes as one: a log row per epoch, last and best once, and a state
    # dict without DDP's "module." prefix
    with open(tmp_path / "a" / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(float(r["train_loss"]) > 0 for r in rows)
    assert sorted(p.name for p in (tmp_path / "a").glob("*.pt")) == ["best.pt", "last.pt"]
    ckpt = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in ckpt["model"])
    done = _torchrun(
        "train", str(cfg), "--out", str(tmp_path / "b"), "--quiet", *overrides, "epochs=1"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    done = _torchrun("train", "--resume", "--out", str(tmp_path / "b"), "--quiet", "epochs=2")
    assert done.returncode == 0, done.stderr[-2000:]
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_stopped_rank_times_out_instead_of_hanging(tmp_path):
    script = tmp_path / "stall.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, time, torch, torch.distributed as dist
            from wsol.runtime import setup_distributed
            d = setup_distributed("cpu", timeout_s=3)
            if d.rank == 1:
                time.sleep(60)  # a rank that stopped answering
            dist.all_reduce(torch.ones(1))
            """
        )
    )
    start = time.time()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           f"--master_port={free_port()}", str(script)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path.cwd())}
    done = subprocess.run(cmd, env=env, timeout=120, capture_output=True, text=True)
    assert done.returncode != 0
    assert time.time() - start < 60  # rank 0 gave up long before rank 1 woke
    assert "timed out" in done.stderr.lower() or "timeout" in done.stderr.lower()


def test_a_stopped_rank_is_named_while_the_others_wait(tmp_path):
    # rank 1 stops itself (SIGSTOP: its heartbeat thread stops too); rank 0, waiting in a
    # collective, says so within seconds and fails at its timeout
    script = tmp_path / "stop.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, signal, torch, torch.distributed as dist
            from wsol.runtime import setup_distributed
            d = setup_distributed("cpu", timeout_s=5)
            if d.rank == 1:
                os.kill(os.getpid(), signal.SIGSTOP)
            dist.all_reduce(torch.ones(1))
            """
        )
    )
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path.cwd()),
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
           "WSOL_HEARTBEAT_S": "0.5", "WSOL_SILENT_S": "2"}  # fmt: skip
    procs = [
        subprocess.Popen(
            [sys.executable, str(script)],
            env={**env, "RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for r in (0, 1)
    ]
    try:
        _, err = procs[0].communicate(timeout=90)
    finally:
        for p in procs:
            p.kill()
    assert procs[0].returncode != 0
    assert "rank 1 has not answered for" in err and "dist_timeout (5 s a collective)" in err


def test_the_heartbeat_threads_are_stopped_before_the_group_ends(monkeypatch):
    # a daemon thread left inside a store call at interpreter exit is torn down across C++
    # frames and aborts a finished rank (std::terminate, exit -6): the CLI stops the threads
    # (and an atexit hook does) before the group is destroyed
    import threading

    import torch.distributed as dist

    from wsol.runtime import start_rank_watch, stop_rank_watch

    def alive() -> set[str]:
        return {t.name for t in threading.enumerate() if t.name.startswith("wsol-")}

    monkeypatch.setenv("WSOL_HEARTBEAT_S", "0.05")
    store = dist.HashStore()
    dist.init_process_group("gloo", rank=0, world_size=1, store=store)
    try:
        start_rank_watch(0, 2, 5.0)
        assert alive() == {"wsol-heartbeat", "wsol-rank-watch"}
        time.sleep(0.2)
        group_store = dist.distributed_c10d._get_default_store()
        assert group_store.check(["wsol/heartbeat/0"])  # it beats
        start = time.time()
        stop_rank_watch()
        assert alive() == set() and time.time() - start < 2  # out at once, not after a beat
    finally:
        stop_rank_watch()
        dist.destroy_process_group()
