"""Box evaluation throughput: the straightforward per-threshold path vs the fast sweep.

Both run on the same synthetic 224 x 224 CAMs (smooth low-resolution maps upsampled bicubically,
like real CAMs) in one run, at the wsolevaluation default interval 0.001, in both contour modes
(MaxBoxAcc and MaxBoxAccV2 need both). Prints both throughputs, the ratio, and whether the
results are identical.

    python benchmarks/bench_evaluate.py [--images 500] [--interval 0.001] [--reference-images 100]

The reference path takes ~50 ms per image and mode, so by default it is timed on the first 100
images (its throughput does not depend on how many); the fast path on all of them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from wsol.localize import prepare_scoremaps
from wsol.metrics import BoxAccumulator, GroundTruth, Protocol


def make_cams(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    cams, gt = [], {}
    for i in range(n):
        k = rng.integers(4, 15)
        cams.append(rng.random((k, k)) ** rng.uniform(1, 4))
        x0, y0 = rng.integers(0, 150, size=2)
        x1, y1 = x0 + rng.integers(20, 224 - x0), y0 + rng.integers(20, 224 - y0)
        boxes = [[x0, y0, x1, y1]]
        if rng.random() < 0.2:
            boxes.append([0, 0, rng.integers(10, 100), rng.integers(10, 100)])
        gt[f"img_{i:05d}"] = GroundTruth(np.array(boxes, dtype=float), (224, 224))
    return cams, gt


def run(
    engine: str, maps: np.ndarray, ids: list[str], gt, protocol: Protocol
) -> tuple[float, dict]:
    acc = BoxAccumulator(gt, protocol, engine)
    start = time.perf_counter()
    for s in range(0, len(ids), 64):
        acc.update(maps[s : s + 64], ids[s : s + 64])
    return time.perf_counter() - start, acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--reference-images", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.001)
    args = parser.parse_args()

    cams, gt = make_cams(args.images)
    ids = list(gt)
    maps = prepare_scoremaps(cams, ids)
    protocol = Protocol(cam_curve_interval=args.interval)
    run("fast", maps[:8], ids[:8], gt, protocol)  # load the compiled kernels before timing

    n_ref = min(args.reference_images, len(ids))
    t_ref, ref = run("reference", maps[:n_ref], ids[:n_ref], gt, protocol)
    t_fast, fast = run("fast", maps, ids, gt, protocol)
    _, fast_same = run("fast", maps[:n_ref], ids[:n_ref], gt, protocol)

    identical = ref.compute() == fast_same.compute()
    ref_rate, fast_rate = n_ref / t_ref, len(ids) / t_fast
    print(
        f"CAMs 224x224, interval {args.interval} ({len(protocol.thresholds)} thresholds), both contour modes"
    )
    print(f"reference (per-threshold cv2): {ref_rate:8.1f} images/s  ({n_ref} images)")
    print(f"fast (union-find sweep)      : {fast_rate:8.1f} images/s  ({len(ids)} images)")
    print(f"ratio fast / reference       : {fast_rate / ref_rate:8.1f}x")
    print(f"identical results            : {identical}")
    out = fast.compute()
    print(
        f"MaxBoxAcc {out['MaxBoxAcc']:.2f}  MaxBoxAccV2 {out['MaxBoxAccV2']:.2f} on the synthetic CAMs"
    )
    if not identical:
        raise SystemExit("fast and reference results differ")


if __name__ == "__main__":
    main()
