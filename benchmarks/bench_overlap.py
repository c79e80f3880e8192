"""Does evaluation wait? `wsol evaluate`'s time against the slower of its two parts alone.

An evaluation extracts CAMs (the model's forward pass) and sweeps them into boxes and masks
(the box sweep at the reference's 1,000 thresholds, PxAP's histograms). `evaluate_model` runs
each batch's sweep in a worker thread while the next batch's CAMs are extracted, so it should
take about as long as the slower part, not the sum. This measures, in one run on the same
images and model:

- CAM extraction alone (the forward passes and the CAMs, nothing swept);
- the sweep alone (the evaluator fed the same CAMs, precomputed);
- the evaluation overlapped (the default) and one after the other (``overlap=False``).

It prints each time and the ratio of the overlapped evaluation to the slower part (goal: at
most 1.1), and checks that both evaluations give the same numbers.

`wsol evaluate` overlaps by default only where the sweep has cores of its own (an accelerator,
or torch threads fewer than the cores); ``--torch-threads 1`` leaves the sweep a core on a CPU.

    python benchmarks/bench_overlap.py [--images 256] [--model resnet18] [--size 224]
        [--torch-threads N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="test images (default 256)")
    parser.add_argument("--model", default="resnet18", help="a registered model (default resnet18)")
    parser.add_argument("--size", type=int, default=224, help="input size (default 224)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--interval", type=float, default=0.001, help="threshold step (0.001)")
    parser.add_argument(
        "--torch-threads", type=int, default=None,
        help="torch's intra-op threads (default torch's own: every core); fewer leaves the "
        "sweep cores of its own, as an accelerator does",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    from wsol.cam import eval_mode, logits_and_cams
    from wsol.config import DataConfig
    from wsol.data.dataset import RecordDataset, eval_transform
    from wsol.data.splits import load_split
    from wsol.data.synth import SynthSpec, make_synthetic
    from wsol.evaluate import evaluate_model, sweep_cores
    from wsol.metrics import LocalizationEvaluator, Protocol, ground_truth
    from wsol.models import create_model

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synth"
        spec = SynthSpec(classes=10, train=10, test=args.images, size=96, seed=1)
        make_synthetic(root, spec, progress=False)
        split = load_split(DataConfig(format="cub", root=str(root)), "test")
        model = create_model(args.model, num_classes=10).eval()
        protocol = Protocol(cam_curve_interval=args.interval)
        loader = torch.utils.data.DataLoader(
            RecordDataset(split, eval_transform(args.size)), batch_size=args.batch_size
        )
        common = dict(crop_size=args.size, batch_size=args.batch_size, workers=0, progress=False)
        evaluate_model(
            model, split, protocol, overlap=True, **{**common, "batch_size": 8}
        )  # warm-up (numba)

        start = time.perf_counter()
        raws = []
        with eval_mode(model), torch.no_grad():
            for images, labels, indices in loader:
                _, cams = logits_and_cams(model, images, labels)
                raws.append((cams.float().numpy(), indices.tolist()))
        t_cams = time.perf_counter() - start

        ids = [r.image_id for r in split.records]
        evaluator = LocalizationEvaluator(ground_truth(split), protocol, boxes=True, masks=True)
        start = time.perf_counter()
        for raw, index in raws:
            evaluator.update(raw, [ids[i] for i in index])
        t_sweep = time.perf_counter() - start

        start = time.perf_counter()
        overlapped = evaluate_model(model, split, protocol, overlap=True, **common)
        t_overlap = time.perf_counter() - start
        start = time.perf_counter()
        sequential = evaluate_model(model, split, protocol, overlap=False, **common)
        t_sequential = time.perf_counter() - start

    same = overlapped["box"] == sequential["box"] and overlapped["PxAP"] == sequential["PxAP"]
    slower = max(t_cams, t_sweep)
    out = {
        "images": args.images,
        "threads": torch.get_num_threads(),
        "sweep_cores": sweep_cores(torch.device("cpu")),
        "cams_s": t_cams,
        "sweep_s": t_sweep,
        "overlapped_s": t_overlap,
        "sequential_s": t_sequential,
        "ratio_overlapped": t_overlap / slower,
        "ratio_sequential": t_sequential / slower,
        "identical": same,
    }
    n = args.images
    print(f"{n} images, {args.model} at {args.size} px, threshold step {args.interval}, "
          f"{torch.get_num_threads()} torch threads, {out['sweep_cores']} core(s) left to the sweep "
          f"(wsol evaluate overlaps by default: {out['sweep_cores'] > 0})")  # fmt: skip
    print(f"CAM extraction alone  {t_cams:7.2f} s  ({n / t_cams:6.1f} img/s)")
    print(f"sweep alone           {t_sweep:7.2f} s  ({n / t_sweep:6.1f} img/s)")
    print(f"evaluate, overlapped  {t_overlap:7.2f} s  ({n / t_overlap:6.1f} img/s)")
    print(f"evaluate, sequential  {t_sequential:7.2f} s  ({n / t_sequential:6.1f} img/s)")
    print(f"ratio to the slower part: overlapped {out['ratio_overlapped']:.2f} (goal <= 1.1), "
          f"sequential {out['ratio_sequential']:.2f}; identical results: {same}")  # fmt: skip
    return out


if __name__ == "__main__":
    main()
