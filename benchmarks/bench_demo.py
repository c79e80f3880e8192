"""How long a new user waits: `wsol demo`'s wall time and CPU time, against the 2-minute goal.

Runs the demo as a user does (`wsol demo --quiet`, a fresh output folder, the default methods
CAM and CutMix and one seed unless told otherwise) in a child process, ``--repeat`` times, and
prints for each run its wall time, its CPU time (user + system of the child and everything it
started, from ``resource.getrusage(RUSAGE_CHILDREN)``), the CPU time over the wall time (how many
cores it kept busy) and the wall time over the goal (``--goal``, 120 s: at most 1.0 meets it).
Measure on idle cores: anything else running makes both times longer.

    python benchmarks/bench_demo.py [--repeat 1] [--goal 120] [-- DEMO ARGS...]
    python benchmarks/bench_demo.py --repeat 2 -- --methods base,cutmix --seeds 1
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_demo(out: Path, demo_args: list[str]) -> tuple[float, float]:
    """(wall s, CPU s) of one `wsol demo` into ``out`` (removed first)."""
    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "wsol.cli", "demo", "--out", str(out), "--quiet", *demo_args],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs (default 1)")
    parser.add_argument("--goal", type=float, default=120.0, help="wall seconds (default 120)")
    parser.add_argument("demo_args", nargs="*", help="after --: arguments of `wsol demo`")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeat):
            wall, cpu = run_demo(Path(tmp) / "demo_out", args.demo_args)
            row = {"run": k + 1, "wall_s": wall, "cpu_s": cpu, "cores_busy": cpu / wall,
                   "wall_over_goal": wall / args.goal}  # fmt: skip
            rows.append(row)
            print(
                f"run {k + 1}: wall {wall:.1f} s, CPU {cpu:.1f} s ({cpu / wall:.2f} cores busy), "
                f"wall / goal ({args.goal:.0f} s) = {wall / args.goal:.2f}",
                flush=True,
            )
    print(f"machine: {os.cpu_count()} cores; demo args: {' '.join(args.demo_args) or '(default)'}")
    return rows


if __name__ == "__main__":
    main()
