"""benchmarks/gpu_check.py in its quick form on the CPU, so that the one-shot GPU check never rots
(the GPU runs it for real: docs/performance.md)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_check_runs_small_on_the_cpu(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "check.json"
    report = module.main(["--device", "cpu", "--quick", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    row = report["models"]["smallcnn"]
    keys = ("train_img_s", "train_device_decode_img_s", "compute_img_s", "loader_img_s")
    for key in (*keys, "evaluate_img_s", "cams_img_s"):
        assert row[key] > 0, key
    assert row["train_over_compute"] == row["train_img_s"] / row["compute_img_s"]
    assert report["workers"] == 0 and report["pin_memory"] is False  # what it ran with
    printed = capsys.readouterr().out
    assert "smallcnn" in printed and "t/c" in printed and f"wrote {out}" in printed


def test_the_demo_benchmark_counts_the_child_s_wall_and_cpu_time(capsys, monkeypatch):
    # the demo itself is too slow for the suite (tests/test_evaluate_model.py runs it small):
    # a child that spins for 0.3 s of CPU stands in for it
    import sys

    spec = importlib.util.spec_from_file_location(
        "bench_demo", ROOT / "benchmarks" / "bench_demo.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    calls = []
    real_run = module.subprocess.run

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
        return real_run([sys.executable, "-c", spin], **kwargs)

    monkeypatch.setattr(module.subprocess, "run", fake_run)
    rows = module.main(["--repeat", "2", "--goal", "10", "--", "--seeds", "1"])
    assert len(rows) == 2 and all(c[1:4] == ["-m", "wsol.cli", "demo"] for c in calls)
    assert calls[0][-2:] == ["--seeds", "1"] and "--quiet" in calls[0]
    for row in rows:
        assert row["cpu_s"] >= 0.3 and row["wall_s"] >= row["cpu_s"] * 0.9
        assert row["wall_over_goal"] == row["wall_s"] / 10
    assert "wall / goal (10 s)" in capsys.readouterr().out
