"""Peak memory of ``wsol evaluate --cams`` at 1,000 and 10,000 images (issue: it grew with the
number of images). Each size runs in a fresh process; prints peak RSS and the growth ratio
(target: under 10%).

    python benchmarks/bench_memory.py [--sizes 1000 10000] [--interval 0.001]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import resource, sys
from pathlib import Path
from wsol.evaluate import evaluate_cams, save_result
from wsol.metrics import Protocol
folder, meta, out, interval = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4])
result = evaluate_cams(folder, meta, protocol=Protocol(cam_curve_interval=interval), progress=False)
save_result(result, out, echo=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # MiB (Linux: KiB)
"""


def write_set(root: Path, n: int) -> tuple[Path, Path]:
    import numpy as np

    rng = np.random.default_rng(0)
    cams, meta = root / "cams", root / "meta"
    (cams / "c").mkdir(parents=True)
    meta.mkdir()
    ids = [f"c/{k:06d}.jpg" for k in range(n)]
    for image_id in ids:
        np.save(cams / f"{image_id}.npy", rng.random((14, 14)).astype(np.float32))
    (meta / "image_ids.txt").write_text("".join(f"{i}\n" for i in ids))
    (meta / "class_labels.txt").write_text("".join(f"{i},0\n" for i in ids))
    (meta / "image_sizes.txt").write_text("".join(f"{i},300,200\n" for i in ids))
    (meta / "localization.txt").write_text("".join(f"{i},20,30,200,150\n" for i in ids))
    return cams, meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--interval", type=float, default=0.001)
    args = parser.parse_args()
    peaks = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            cams, meta = write_set(Path(tmp) / str(n), n)
            out = Path(tmp) / f"out{n}"
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(cams), str(meta), str(out), str(args.interval)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            peaks.append(float(done.stdout.strip().splitlines()[-1]))
            print(f"{n:>7} CAMs: peak RSS {peaks[-1]:.0f} MiB")
    growth = peaks[-1] / peaks[0] - 1
    print(f"growth {args.sizes[0]} -> {args.sizes[-1]}: {100 * growth:+.1f}% (target < 10%)")


if __name__ == "__main__":
    main()
