"""`wsol sweep`: Optuna studies of ordinary run folders, on SQLite and PostgreSQL, with two
workers and with a killed one."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import cpu_run, free_port

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "synth_smallcnn_base.yaml"


@pytest.fixture
def space(tmp_path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text("optim.lr: {type: float, low: 0.001, high: 0.1, log: true}\n")
    return path


def _sweep_cmd(root, space, out, trials, *extra) -> list[str]:
    overrides = cpu_run(root, **{"data.val_per_class": 2, "cam_curve_interval": 0.1})
    return [sys.executable, "-m", "wsol.cli", "sweep", str(CONFIG), *overrides,
            "--space", str(space), "--trials", str(trials), "--out", str(out), *extra]  # fmt: skip


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture
def in_process(monkeypatch, tmp_path):
    """``wsol sweep`` run through the CLI's ``main`` in this process (its trials are still
    child processes, one thread each): a command the test need not kill costs no interpreter
    start of its own."""
    from wsol.cli import main

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.chdir(tmp_path)
    return lambda cmd: main(cmd[cmd.index("wsol.cli") + 1 :])


def test_space_files_are_checked_with_file_and_line(tmp_path):
    from wsol.config import ConfigError
    from wsol.sweep import read_space

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "optim.lr: {type: float, low: 0.1, high: 0.01}\n"
        "optim.nope: {type: float, low: 0.0, high: 1.0}\n"
        "method.has_drop_rate: {type: float, low: 0.0, high: 2.0}\n"
        "model.name: {type: categorical, choices: [smallcnn, resnet18]}\n"
    )
    with pytest.raises(ConfigError) as err:
        read_space(bad)
    text = str(err.value)
    assert "bad.yaml:1: optim.lr: needs low < high" in text
    assert "bad.yaml:2: optim.nope" in text and "unknown key" in text
    assert "bad.yaml:3: method.has_drop_rate" in text and "in [0, 1]" in text
    assert "model.name" not in text  # a valid categorical dimension
    for shipped in sorted((ROOT / "configs" / "spaces").glob("*.yaml")):
        assert read_space(shipped), shipped  # every shipped space is valid


def test_a_trial_is_wsol_train_or_torchrun_and_a_retry_resumes(tmp_path):
    from wsol.sweep import train_command

    run = tmp_path / "trial_0003"
    one = train_command(CONFIG, ["optim.lr=0.1"], run, nproc=1)
    assert one[1:4] == ["-m", "wsol.cli", "train"] and "optim.lr=0.1" in one
    many = train_command(CONFIG, ["optim.lr=0.1"], run, nproc=4)
    assert many[1:3] == ["-m", "torch.distributed.run"] and "--nproc_per_node=4" in many
    assert many[many.index("wsol.cli") + 1] == "train"
    run.mkdir()
    (run / "last.pt").write_bytes(b"")
    assert train_command(CONFIG, ["optim.lr=0.1"], run, 1)[3:6] == ["train", "--resume", "--out"]


def test_overrides_read_back_exactly():
    from wsol.config import config_from_dict
    from wsol.sweep import override

    for value in (1e-05, 0.1 + 0.2, 3.0e-7):
        cfg = config_from_dict({}, [override("optim.lr", value)])
        assert cfg.optim.lr == value
    assert config_from_dict({}, [override("method.method", "cutmix")]).method.method == "cutmix"
    assert config_from_dict({}, [override("model.large_feature_map", True)]).model.large_feature_map


def test_a_three_trial_sweep_on_sqlite_writes_its_outputs_and_continues(
    synth_root, tmp_path, space, in_process, capfd
):
    out = tmp_path / "sweep"
    assert in_process([*_sweep_cmd(synth_root, space, out, 3), "--seed", "0"]) == 0
    stdout = capfd.readouterr().out
    assert (out / "study.db").is_file()
    table = pd.read_csv(out / "sweep.csv")
    assert list(table["state"]) == ["COMPLETE"] * 3
    assert table["optim.lr"].between(0.001, 0.1).all() and table["optim.lr"].nunique() == 3
    for _, row in table.iterrows():  # each trial is an ordinary run folder trained at its value
        cfg = yaml.safe_load((Path(row["run"]) / "config.yaml").read_text())
        assert cfg["optim"]["lr"] == row["optim.lr"]
        log = pd.read_csv(Path(row["run"]) / "log.csv")
        assert log["val_MaxBoxAccV2"].iloc[-1] == pytest.approx(row["val_metric"])
    best = table.loc[table["val_metric"].idxmax()]
    chosen = yaml.safe_load((out / "best.yaml").read_text())
    assert chosen["optim"]["lr"] == best["optim.lr"] and chosen["data"]["val_per_class"] == 2
    # how its trials were trained: one process, so a global batch of the config's batch_size
    record = json.loads((out / "best.json").read_text())
    assert record["nproc"] == 1 and record["global_batch"] == chosen["batch_size"]
    assert (
        (out / "best.yaml")
        .read_text()
        .startswith("# chosen by a sweep whose trials trained with 1")
    )
    assert (out / "plots" / "optim.lr.png").is_file()
    assert "3/3 complete" in stdout

    # the same command again: the study is complete, nothing more runs; --test-best trains the
    # chosen config with a seed and evaluates it on test
    assert in_process([*_sweep_cmd(synth_root, space, out, 3), "--test-best", "1"]) == 0
    again = capfd.readouterr().out
    assert len(pd.read_csv(out / "sweep.csv")) == 3
    tested = json.loads((out / "best" / "seed_0" / "eval_test" / "metrics.json").read_text())
    assert tested["split"] == "test" and tested["context"]["seed"] == 0
    assert tested["context"]["method"] == "base-swept"  # a row of its own in `wsol compare`
    trained = yaml.safe_load((out / "best" / "seed_0" / "config.yaml").read_text())
    assert trained["optim"]["lr"] == best["optim.lr"]
    assert "wsol compare" in again
    # another space in the same study is refused, before any trial runs
    from wsol.sweep import run_sweep

    other = tmp_path / "other.yaml"
    other.write_text("optim.weight_decay: {type: float, low: 0.0001, high: 0.01, log: true}\n")
    overrides = _sweep_cmd(synth_root, other, out, 4)[5:-6]
    with pytest.raises(ValueError, match="another config, overrides or space"):
        run_sweep(CONFIG, overrides, other, 4, out, echo=False)
    assert len(pd.read_csv(out / "sweep.csv")) == 3


def _two_workers(run_here, root, space, out, trials, *extra) -> None:
    """Two workers of one command at once: one in a process of its own, one in this process."""
    cmd = _sweep_cmd(root, space, out, trials, *extra)
    other = subprocess.Popen(
        cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        here = run_here(cmd)
    finally:
        output = other.communicate(timeout=240)[0]
    assert here == 0 and other.returncode == 0, output


def _complete_trials(out: Path) -> pd.DataFrame:
    table = pd.read_csv(out / "sweep.csv")
    complete = table[table["state"] == "COMPLETE"]
    assert complete["run"].nunique() == len(complete)  # distinct run folders
    assert complete["optim.lr"].nunique() == len(complete)  # distinct values
    return complete


def test_two_workers_on_one_storage_complete_exactly_the_trials(
    synth_root, tmp_path, space, in_process
):
    # both workers run the same command, one --seed included (docs/sweep.md): their trials
    # still differ, each draw being a function of the seed and the trial's number
    out = tmp_path / "shared"
    _two_workers(in_process, synth_root, space, out, 2, "--seed", "7")
    complete = _complete_trials(out)
    assert len(complete) == 2
    import optuna

    from wsol.sweep import trial_seeded_sampler

    study = optuna.create_study(sampler=trial_seeded_sampler(7))
    expected = {}
    for number in range(2):  # the same draws again, trial by trial, in one process
        trial = study.ask()
        expected[number] = trial.suggest_float("optim.lr", 0.001, 0.1, log=True)
        study.tell(trial, 0.0)
    assert sorted(complete["optim.lr"]) == pytest.approx(sorted(expected.values()))


def test_the_trial_seeded_sampler_draws_as_random_search_does():
    import numpy as np
    import optuna

    from wsol.sweep import trial_seeded_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=trial_seeded_sampler(0))
    values, ints, cats = [], [], []
    for _ in range(400):
        trial = study.ask()
        values.append(trial.suggest_float("lr", 1e-4, 1e-0, log=True))
        ints.append(trial.suggest_int("k", 2, 6))
        cats.append(trial.suggest_categorical("c", ["a", "b", "c"]))
        study.tell(trial, 0.0)
    logs = np.log10(values)
    assert logs.min() >= -4 and logs.max() <= 0 and abs(logs.mean() + 2) < 0.2  # log-uniform
    assert set(ints) == {2, 3, 4, 5, 6} and set(cats) == {"a", "b", "c"}
    assert len(set(values)) == 400  # every trial its own draw


def test_a_locked_study_database_fails_within_seconds(
    synth_root, tmp_path, space, in_process, capsys
):
    import sqlite3

    from wsol.cli import build_parser
    from wsol.sweep import SQLITE_WAIT_S, open_study

    # the wait a user gets unless told otherwise: 10 s, in the CLI as in the Python API
    cli = build_parser().parse_args(["sweep", "c.yaml", "--space", "s.yaml", "--out", "o"])
    assert cli.lock_wait == SQLITE_WAIT_S == 10
    assert inspect.signature(open_study).parameters["lock_wait"].default == SQLITE_WAIT_S
    out = tmp_path / "locked"
    out.mkdir()
    holder = sqlite3.connect(out / "study.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the database
    try:
        start = time.time()
        code = in_process([*_sweep_cmd(synth_root, space, out, 1), "--lock-wait", "1.5"])
        took = time.time() - start
    finally:
        holder.rollback()
        holder.close()
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert "is locked by another process (it waited 1.5 s)" in err and "Traceback" not in err
    assert 1.5 <= took < 1.5 + 30  # it waited as long as it was told, not minutes


def test_a_missing_data_root_is_refused_before_the_first_trial(tmp_path, space, in_process, capsys):
    assert in_process(_sweep_cmd(tmp_path / "nowhere", space, tmp_path / "s", 1)) == 2
    err = capsys.readouterr().err
    assert "data.root" in err and "does not exist" in err
    assert not (tmp_path / "s" / "trials").exists()


def _postgres_binaries() -> Path | None:
    for candidate in [shutil.which("initdb"), *Path("/usr/lib/postgresql").glob("*/bin/initdb")]:
        if candidate:
            return Path(candidate).resolve().parent
    return None


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL cluster on a local port, made and removed by the test (as the
    postgres user when the tests run as root: initdb refuses root)."""
    bindir = _postgres_binaries()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (.ci/run installs it with apt-get)")
    pytest.importorskip("psycopg")
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="wsol-pg-"))  # pytest's tmp folders are private to root
    base.chmod(0o755)
    data = base / "pg"
    data.mkdir()
    run_as: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(data, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "wsol",
                    "--auth=trust"], check=True, capture_output=True)  # fmt: skip
    opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-w",
                    "-l", str(data / "server.log"), "start"], check=True, capture_output=True)  # fmt: skip
    try:
        subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U",
                        "wsol", "sweeps"], check=True, capture_output=True)  # fmt: skip
        yield f"postgresql://wsol@127.0.0.1:{port}/sweeps"
    finally:
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


def test_two_workers_share_a_postgresql_study(synth_root, tmp_path, space, postgres, in_process):
    out = tmp_path / "pg_sweep"
    _two_workers(in_process, synth_root, space, out, 2, "--storage", postgres, "--study", "pg-test")
    assert len(_complete_trials(out)) == 2
    assert not (out / "study.db").exists()  # the study lives in the server


def test_a_killed_worker_leaves_a_study_the_next_command_completes(
    synth_root, tmp_path, space, in_process
):
    out = tmp_path / "killed"
    cmd = [*_sweep_cmd(synth_root, space, out, 2), "--heartbeat", "1"]
    cmd[cmd.index("epochs=1")] = "epochs=3"
    worker = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "trials" / "trial_0000"
    deadline = time.time() + 120
    while not (first / "last.pt").is_file() and time.time() < deadline:  # mid-trial: epoch 1 done
        time.sleep(0.2)
    assert (first / "last.pt").is_file()
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    time.sleep(4)  # the trial's heartbeat goes stale (grace period: 3 heartbeats)
    assert in_process(cmd) == 0  # the next command, here in this process
    table = pd.read_csv(out / "sweep.csv")
    complete = _complete_trials(out)
    assert len(complete) == 2
    failed = table[table["state"] == "FAIL"]
    assert list(failed["trial"]) == [0]  # the killed worker's trial, marked failed
    retry = complete[complete["note"].fillna("").str.contains("retry of trial 0")]
    assert len(retry) == 1 and retry["run"].iloc[0] == str(first)  # resumed in its own folder
    assert retry["optim.lr"].iloc[0] == pytest.approx(failed["optim.lr"].iloc[0])
    log = pd.read_csv(first / "log.csv")
    assert list(log["epoch"]) == [1, 2, 3]  # resumed, not restarted: each epoch once


def test_pruning_reports_each_evaluated_epoch_and_stops_a_poor_trial(tmp_path):
    import optuna

    from wsol.sweep import Sweep, open_study

    run = tmp_path / "run"
    run.mkdir()
    (run / "log.csv").write_text(
        "epoch,val_MaxBoxAccV2,val_PxAP\n1,40.0,\n2,,\n3,45.5,\n"  # epoch 2 not evaluated
    )

    class Trial:
        reported: list = []

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return len(self.reported) == 2

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        sweep = Sweep(CONFIG, [], [], tmp_path, 3, "auto", poll=0.05)
        with pytest.raises(optuna.TrialPruned, match="pruned at epoch 3"):
            sweep._follow(Trial(), sleeper, run)
        assert Trial.reported == [(1, 40.0), (3, 45.5)]
    finally:
        sleeper.kill()
    study = open_study(f"sqlite:///{tmp_path / 's.db'}", "p", "random", 0, True, 60)
    assert isinstance(study.pruner, optuna.pruners.MedianPruner)
