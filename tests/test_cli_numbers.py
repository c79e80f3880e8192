"""Every number a user types on the command line is checked in one place (`wsol.cli.number`):
a sentence naming the option and the allowed range, never a traceback, never a clamp."""

from __future__ import annotations

import pytest

from wsol.cli import main


@pytest.mark.parametrize(
    "argv,option,allowed",
    [
        (["demo", "--seeds", "0"], "--seeds", "a whole number >= 1"),
        (["demo", "--epochs", "-1"], "--epochs", "a whole number >= 1"),
        (["data", "synth", "x", "--classes", "0"], "--classes", "a whole number >= 1"),
        (["data", "synth", "x", "--size", "4"], "--size", "a whole number >= 16"),
        (["data", "synth", "x", "--train", "1.5"], "--train", "a whole number >= 1"),
        (["gallery", "r", "--out", "g", "--count", "0"], "--count", "a whole number >= 1"),
        (["compare", "r", "--out", "c", "--bootstrap", "0"], "--bootstrap", "a whole number >= 1"),
        (["evaluate", "r", "--iou", "150"], "--iou", "a whole number > 0 and <= 100"),
        (["evaluate", "r", "--threshold", "nan"], "--threshold", "a number >= 0 and <= 1"),
        (["evaluate", "r", "--threshold", "1.5"], "--threshold", "a number >= 0 and <= 1"),
        (
            ["evaluate", "r", "--cam-curve-interval", "1e400"],
            "--cam-curve-interval",
            "a number > 0 and < 1",
        ),
        (["evaluate", "r", "--workers", "-2"], "--workers", "a whole number >= 0"),
        (["sweep", "c.yaml", "--out", "s", "--heartbeat", "0"], "--heartbeat", "a number > 0"),
        (["sweep", "c.yaml", "--out", "s", "--lock-wait", "-1"], "--lock-wait", "a number > 0"),
        (["sweep", "c.yaml", "--out", "s", "--trials", "inf"], "--trials", "a whole number >= 1"),
    ],
)
def test_bad_numbers_are_refused_with_a_sentence(argv, option, allowed, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: must be {allowed}" in err and "Traceback" not in err


def test_a_synthetic_set_at_the_smallest_allowed_size(tmp_path):
    assert main(["data", "synth", str(tmp_path / "s"), "--size", "16", "--classes", "2",
                 "--train", "4", "--test", "2", "--quiet"]) == 0  # fmt: skip


def test_a_changed_sweep_says_what_changed():
    from wsol.sweep import _identity_changes

    had = {"config": {"optim": {"lr": 0.1}, "epochs": 3}, "overrides": ["seed=1"],
           "space": [{"key": "optim.lr", "low": 0.001, "high": 0.1}]}  # fmt: skip
    now = {"config": {"optim": {"lr": 0.1}, "epochs": 5}, "overrides": ["seed=2"],
           "space": [{"key": "optim.lr", "low": 0.0001, "high": 0.1}]}  # fmt: skip
    changes = _identity_changes(had, now)
    assert "config epochs 3 -> 5" in changes
    assert "override seed=1 dropped" in changes and "override seed=2 added" in changes
    assert "space optim.lr.low 0.001 -> 0.0001" in changes


def test_data_check_names_labels_beyond_the_class_list(tmp_path, capsys):
    meta = tmp_path / "m" / "test"
    meta.mkdir(parents=True)
    (meta / "image_ids.txt").write_text("a.jpg\nb.jpg\n")
    (meta / "class_labels.txt").write_text("a.jpg,0\nb.jpg,5\n")
    (meta / "image_sizes.txt").write_text("a.jpg,4,4\nb.jpg,4,4\n")
    (meta / "localization.txt").write_text("a.jpg,1,1,2,2\nb.jpg,1,1,2,2\n")
    (tmp_path / "m" / "class_names.txt").write_text("x\ny\n")
    assert main(["data", "check", str(tmp_path / "m"), "--quiet"]) == 1
    assert "class_labels.txt:2: label 5 out of range (the class list has 2: 0..1)" in (
        capsys.readouterr().out
    )
