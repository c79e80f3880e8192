"""``wsol demo``: the whole pipeline on the built-in synthetic set, on the CPU, in minutes.

1. writes the synthetic set (CUB layout) to ``OUT/data``;
2. trains the small CNN with plain CAM training (``base``) and with CutMix, for each seed;
3. evaluates each on the test split, with the CAM threshold chosen on the held-out val split;
4. compares them (``OUT/compare``: table, curves, paired bootstrap intervals) and renders a
   gallery of the images where CutMix changed the box most (``OUT/gallery``).

Every step resumes: a finished run or evaluation is kept, an interrupted training continues from
its last checkpoint.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .config import config_from_dict
from .data.synth import SynthSpec, make_synthetic

DEMO_SPEC = SynthSpec(classes=10, train=1000, test=500, size=64, seed=0)

#: the recipe of configs/synth_smallcnn_{base,cutmix}.yaml (a test keeps them equal)
DEMO_RECIPE = {
    "data": {
        "format": "cub",
        "val_per_class": 10,
        "resize_size": 72,
        "crop_size": 64,
        "workers": 0,
    },
    "model": {"name": "smallcnn", "pretrained": None},
    "optim": {"lr": 0.05, "head_lr_mult": 1.0, "weight_decay": 0.0005, "scheduler": "cosine"},
    "epochs": 12,
    "batch_size": 32,
    "amp": "none",
    "cam_curve_interval": 0.01,
}
METHODS = {
    "base": {"method": "base"},
    "cutmix": {"method": "cutmix", "cutmix_beta": 1.0, "cutmix_prob": 1.0},
}


def demo_config(
    data_root: Path,
    method: str,
    seed: int,
    epochs: int | None = None,
    val_per_class: int | None = None,
):
    recipe = json.loads(json.dumps(DEMO_RECIPE))
    if val_per_class is not None:
        recipe["data"]["val_per_class"] = val_per_class
    recipe["data"]["root"] = str(data_root)
    recipe["method"] = dict(METHODS[method])
    recipe["seed"] = seed
    recipe["device"] = "cpu"
    if epochs is not None:
        recipe["epochs"] = epochs
    return config_from_dict(recipe)


def _data_ready(root: Path, spec: SynthSpec) -> bool:
    meta = root / "synth.json"
    return meta.is_file() and json.loads(meta.read_text()) == json.loads(json.dumps(spec.__dict__))


def run_demo(
    out: str | Path = "demo_out",
    seeds: int = 1,
    epochs: int | None = None,
    progress: bool = True,
    spec: SynthSpec = DEMO_SPEC,
    val_per_class: int | None = None,
) -> dict:
    """Run the demo into ``out``; returns the paths of what it wrote (``spec`` and
    ``val_per_class`` shrink it for tests)."""
    from .evaluate import evaluate_checkpoint
    from .gallery import build_gallery
    from .report import compare_runs
    from .runtime import load_checkpoint
    from .train import train

    out = Path(out)
    start = time.time()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = out / "data"
    if not _data_ready(data, spec):
        print(f"[demo] writing the synthetic data set to {data}")
        make_synthetic(data, spec, progress=progress)
    evals = []
    for seed in range(seeds):
        for method in METHODS:
            run = out / "runs" / f"{method}_seed{seed}"
            cfg = demo_config(data, method, seed, epochs, val_per_class)
            done = (run / "last.pt").is_file() and load_checkpoint(run / "last.pt")[
                "epoch"
            ] + 1 >= cfg.epochs
            if not done:
                print(f"[demo] training {method} (seed {seed}) -> {run}")
                train(cfg, run, resume=(run / "last.pt").is_file(), progress=progress)
            eval_dir = run / "eval_test"
            if not (eval_dir / "per_image.csv").is_file():
                print(f"[demo] evaluating {run.name} on the test split (threshold chosen on val)")
                evaluate_checkpoint(
                    run,
                    eval_dir,
                    val_threshold=True,
                    workers=0,
                    device="cpu",
                    progress=progress,
                    echo=False,
                )
            evals.append(eval_dir)
    print("[demo] comparing base and CutMix")
    written = compare_runs(evals, out / "compare")
    base = [e for e in evals if e.parent.name.startswith("base")]
    cut = [e for e in evals if e.parent.name.startswith("cutmix")]
    gallery = build_gallery([base[0], cut[0]], out / "gallery", select="diff", count=12)
    print((out / "compare" / "table.md").read_text())
    print((out / "compare" / "differences.csv").read_text())
    print(f"[demo] done in {time.time() - start:.0f} s")
    print(f"  table:    {out / 'compare' / 'table.md'} (and table.csv, runs.csv, differences.csv)")
    print(f"  curves:   {written['curves']}")
    print(f"  gallery:  {gallery['html']} and {gallery['png']}")
    print(f"  runs:     {out / 'runs'}")
    return {**written, "gallery_html": gallery["html"], "gallery_png": gallery["png"]}
