"""One command that measures what matters on a GPU, in minutes: training and evaluation
throughput through wsol's own code, against the bounds they could reach.

    python benchmarks/gpu_check.py                        # on the GPU it finds, ~5 minutes
    python benchmarks/gpu_check.py --device cpu --quick   # the same code, small (a test runs it)

It writes a CUB-layout synthetic set of JPEG files of realistic size (2,000 images of 400 to 500
pixels a side) to a temporary folder, then for each model (the reference ResNet-50, VGG16-GAP and
InceptionV3, at 224 px, bf16 autocast and channels-last on a GPU):

- ``train_img_s``: `wsol.train.train` itself, one epoch capped at ``--steps`` steps, through
  its data loader (``--workers`` processes, pinned memory on a GPU) reading and augmenting the
  JPEG files;
- ``compute_img_s``: a bare loop on the same model over a batch already in memory on the device
  (forward, backward, SGD step): the compute bound;
- ``loader_img_s``: the data loader alone (decode, resize, crop, flip, collate): the data bound;
- ``evaluate_img_s``: `wsol evaluate` of the trained checkpoint on the test split (CAM extraction
  and the box sweep at the reference's 1,000 thresholds, overlapped), and ``cams_img_s``: CAM
  extraction alone;
- ``train_device_decode_img_s``: the same training epoch with ``data.decode: device`` (the
  loader reads the files' bytes; JPEG decoding and the augmentation run on the device);
- the peak GPU memory of each (``*_peak_mib``).

The ratios ``train / compute`` and ``train / loader`` say which bound training is at; ``evaluate
/ cams`` whether evaluation waits for the sweep. One JSON (``--out``, default
gpu_check.json) and a short table; docs/performance.md explains how to read them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compute_bound(
    model, device, batch: int, size: int, steps: int, dtype
) -> tuple[float, float | None]:
    """Images/s of forward + backward + SGD on one in-memory batch (and the peak memory)."""
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = model.to(device, memory_format=fmt).train()
    images = torch.randn(batch, 3, size, size, device=device).to(memory_format=fmt)
    targets = torch.randint(0, 10, (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    _peak_reset(device)
    for step in range(steps + 2):  # two warm-up steps
        if step == 2:
            _sync(device)
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(images), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return batch * steps / (time.perf_counter() - start), _peak_mib(device)


def loader_bound(dataset, batch: int, workers: int, pin: bool, steps: int) -> float:
    """Images/s of the training data loader alone."""
    from torch.utils.data import DataLoader

    from wsol.data.dataset import collate_skipping

    loader = DataLoader(
        dataset, batch_size=batch, shuffle=True, num_workers=workers, pin_memory=pin,
        collate_fn=collate_skipping, persistent_workers=False, drop_last=False,
    )  # fmt: skip
    seen, start = 0, None
    for k, (images, _, _, _) in enumerate(loader):
        if k == 1:  # the first batch pays for starting the workers
            start, seen = time.perf_counter(), 0
        seen += len(images)
        if k >= steps:
            break
    return seen / (time.perf_counter() - start) if start else float("nan")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (cuda if there is one), cuda or cpu")
    parser.add_argument("--quick", action="store_true", help="small: a test of the script itself")
    parser.add_argument("--models", default=None, help="comma-separated (default: the three)")
    parser.add_argument("--images", type=int, default=None, help="synthetic images (2000)")
    parser.add_argument("--size", type=int, default=None, help="input size (224)")
    parser.add_argument("--batch-size", type=int, default=None, help="batch (128 on a GPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (30)")
    parser.add_argument("--workers", type=int, default=None, help="loader processes")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    args = parser.parse_args(argv)

    from wsol.cam import eval_mode, logits_and_cams
    from wsol.config import load_config
    from wsol.data.dataset import RecordDataset, eval_transform, train_transform
    from wsol.data.splits import load_split
    from wsol.data.synth import SynthSpec, make_synthetic
    from wsol.evaluate import evaluate_checkpoint
    from wsol.models import create_model
    from wsol.runtime import load_checkpoint_model, resolve_device
    from wsol.train import train

    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    quick = args.quick
    models = (args.models or ("smallcnn" if quick else "resnet50,vgg16,inception_v3")).split(",")
    n_images = args.images or (24 if quick else 2000)
    size = args.size or (64 if quick else 224)
    batch = args.batch_size or (8 if quick else (128 if gpu else 32))
    steps = args.steps or (2 if quick else 30)
    workers = (
        args.workers if args.workers is not None else (0 if quick else min(8, os.cpu_count() or 1))
    )
    dtype = torch.bfloat16 if gpu else None
    report = {
        "device": torch.cuda.get_device_name(device) if gpu else platform.processor() or "cpu",
        "torch": str(torch.__version__),
        "quick": quick,
        "images": n_images,
        "size": size,
        "batch_size": batch,
        "steps": steps,
        "workers": workers,
        "pin_memory": gpu,
        "amp": "bf16" if gpu else "none",
        "channels_last": gpu,
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synth"
        train_n = max(n_images - n_images // 4, 2)
        spec = SynthSpec(classes=10, train=train_n, test=n_images - train_n,
                         size=96 if quick else 400, seed=0)  # fmt: skip
        start = time.perf_counter()
        make_synthetic(root, spec, progress=False)
        report["synth_s"] = time.perf_counter() - start
        for name in models:
            row: dict = {}
            overrides = [
                "data.format=cub", f"data.root={root}", "data.val_per_class=0",
                f"data.resize_size={int(size * 8 / 7)}", f"data.crop_size={size}",
                f"data.workers={workers}", f"model.name={name}", "model.pretrained=null",
                f"model.channels_last={str(gpu).lower()}", f"batch_size={batch}", "epochs=1",
                f"max_steps_per_epoch={steps}", f"amp={'bf16' if gpu else 'none'}",
                f"device={device.type}", "tensorboard=false",
            ]  # fmt: skip
            cfg = load_config(None, overrides)
            split = load_split(cfg.data, "train")
            dataset = RecordDataset(split, train_transform(cfg.data.resize_size, size))
            row["loader_img_s"] = loader_bound(dataset, batch, workers, gpu, steps)
            row["compute_img_s"], row["compute_peak_mib"] = compute_bound(
                create_model(name, num_classes=10), device, batch, size, steps, dtype
            )
            run = Path(tmp) / f"run_{name}"
            _peak_reset(device)
            last = train(cfg, run, progress=False, echo=False)
            row["train_img_s"] = float(last["images_per_s"])
            row["train_peak_mib"] = _peak_mib(device)
            # the same epoch with data.decode: device (the loader reads bytes; decode_jpeg and
            # the augmentation on the device): does it lift a loader-bound run?
            cfg_device = load_config(None, [*overrides, "data.decode=device"])
            _peak_reset(device)
            last = train(cfg_device, Path(tmp) / f"run_{name}_device_decode", progress=False,
                         echo=False)  # fmt: skip
            row["train_device_decode_img_s"] = float(last["images_per_s"])
            row["train_device_decode_peak_mib"] = _peak_mib(device)
            test = load_split(cfg.data, "test")
            model, _, _ = load_checkpoint_model(run, device)
            loader = torch.utils.data.DataLoader(
                RecordDataset(test, eval_transform(size)), batch_size=batch, num_workers=workers,
                pin_memory=gpu,
            )  # fmt: skip
            _peak_reset(device)
            start = time.perf_counter()
            with (
                eval_mode(model),
                torch.no_grad(),
                torch.autocast(device.type, dtype=dtype, enabled=dtype is not None),
            ):
                for images, labels, _ in loader:
                    _, cams = logits_and_cams(model, images.to(device, non_blocking=True),
                                              labels.to(device))  # fmt: skip
                    cams.float().cpu()
            row["cams_img_s"] = len(test) / (time.perf_counter() - start)
            row["cams_peak_mib"] = _peak_mib(device)
            _peak_reset(device)
            start = time.perf_counter()
            evaluate_checkpoint(run, Path(tmp) / f"eval_{name}", device=device.type,
                                batch_size=batch, workers=workers, progress=False, echo=False)  # fmt: skip
            row["evaluate_img_s"] = len(test) / (time.perf_counter() - start)
            row["evaluate_peak_mib"] = _peak_mib(device)
            row["train_over_compute"] = row["train_img_s"] / row["compute_img_s"]
            row["train_over_loader"] = row["train_img_s"] / row["loader_img_s"]
            row["device_decode_over_train"] = row["train_device_decode_img_s"] / row["train_img_s"]
            row["evaluate_over_cams"] = row["evaluate_img_s"] / row["cams_img_s"]
            report["models"][name] = row
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{report['device']}, torch {report['torch']}, {size} px, batch {batch}, {workers} "
          f"loader workers, pinned memory {gpu}, {report['amp']}")  # fmt: skip
    print(f"{'model':<14}{'train':>9}{'compute':>9}{'loader':>9}{'t/c':>6}{'t/l':>6}"
          f"{'dev-dec':>9}{'eval':>9}{'cams':>9}{'e/c':>6}{'peak MiB':>10}")  # fmt: skip
    for name, row in report["models"].items():
        peak = max((v for k, v in row.items() if k.endswith("peak_mib") and v), default=None)
        print(f"{name:<14}{row['train_img_s']:9.1f}{row['compute_img_s']:9.1f}"
              f"{row['loader_img_s']:9.1f}{row['train_over_compute']:6.2f}"
              f"{row['train_over_loader']:6.2f}{row['train_device_decode_img_s']:9.1f}"
              f"{row['evaluate_img_s']:9.1f}{row['cams_img_s']:9.1f}"
              f"{row['evaluate_over_cams']:6.2f}{'' if peak is None else f'{peak:10.0f}'}")  # fmt: skip
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
