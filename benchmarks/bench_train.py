"""Training-step throughput: ``wsol.train.train_step`` against a bare PyTorch loop.

Same model, batch and in-memory data, in one run; rounds alternate between the variants and the
median is reported, so machine noise hits all alike. Prints images/s, the ratio wsol / bare
(target >= 0.95) and the CutMix overhead against no mixing (target < 3%).

    python benchmarks/bench_train.py [--model resnet18] [--size 64] [--batch 32] [--steps 20] [--rounds 5]

On a GPU (when one is visible) it uses it, with bf16 autocast for both variants.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from wsol.mixing import MixingConfig
from wsol.models import create_model
from wsol.train import train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else None
    torch.manual_seed(0)
    images = torch.randn(args.steps, args.batch, 3, args.size, args.size, device=device)
    labels = torch.randint(0, 10, (args.steps, args.batch), device=device)

    def fresh():
        torch.manual_seed(0)
        model = create_model(args.model, 10).to(device).train()
        return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def bare(model, opt):
        for x, y in zip(images, labels):
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def ours(method):
        config = MixingConfig(method=method)
        gen = torch.Generator().manual_seed(0)

        def run(model, opt):
            for x, y in zip(images, labels):
                train_step(model, x, y, opt, config, gen, None, dtype)

        return run

    variants = {"bare PyTorch": bare, "wsol base": ours("base"), "wsol cutmix": ours("cutmix")}
    times: dict[str, list[float]] = {k: [] for k in variants}
    for fn in variants.values():  # warm-up
        fn(*fresh())
    for _ in range(args.rounds):
        for name, fn in variants.items():
            model, opt = fresh()
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn(model, opt)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    n = args.steps * args.batch
    rate = {k: n / statistics.median(v) for k, v in times.items()}
    print(
        f"{args.model} {args.size}px batch {args.batch} on {device} ({args.rounds} rounds x {args.steps} steps)"
    )
    for name, r in rate.items():
        print(f"{name:<14} {r:9.1f} images/s")
    print(
        f"ratio wsol base / bare : {rate['wsol base'] / rate['bare PyTorch']:.3f}  (target >= 0.95)"
    )
    overhead = 1 - rate["wsol cutmix"] / rate["wsol base"]
    print(f"CutMix overhead        : {100 * overhead:.1f}%  (target < 3%)")


if __name__ == "__main__":
    main()
