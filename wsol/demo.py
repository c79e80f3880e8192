"""``wsol demo``: the whole pipeline on the built-in synthetic set, on the CPU, in minutes.

1. writes the synthetic set (CUB layout) to ``OUT/data``;
2. trains the small CNN with each method (default: plain CAM training, ``base``, and CutMix;
   ``methods`` picks any of :data:`METHODS`), for each seed;
3. evaluates each on the test split, with the CAM threshold chosen on the held-out val split,
   and the center-Gaussian baseline on the same split;
4. compares them (``OUT/compare``: table, curves, bootstrap intervals of each method's
   difference to ``base``), says in one sentence per method whether it localizes better than
   ``base``, and renders a gallery of the images where the methods' boxes differ most
   (``OUT/gallery``).

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
    "model": {"name": "smallcnn", "pretrained": None, "channels_last": True},
    "optim": {"lr": 0.05, "head_lr_mult": 1.0, "weight_decay": 0.0005, "scheduler": "cosine"},
    "epochs": 12,
    "eval_every": 4,
    "batch_size": 32,
    "amp": "none",
    "cam_curve_interval": 0.01,
}
#: the method sections of configs/synth_smallcnn_<method>.yaml (the reference's defaults)
METHODS = {
    "base": {"method": "base"},
    "cutmix": {"method": "cutmix", "cutmix_beta": 1.0, "cutmix_prob": 1.0},
    "has": {"method": "has", "has_grid_size": 4, "has_drop_rate": 0.5},
    "acol": {"method": "acol", "acol_threshold": 0.7},
    "spg": {
        "method": "spg",
        "spg_threshold_1h": 0.7,
        "spg_threshold_1l": 0.01,
        "spg_threshold_2h": 0.5,
        "spg_threshold_2l": 0.05,
        "spg_threshold_3h": 0.7,
        "spg_threshold_3l": 0.1,
    },
    "adl": {"method": "adl", "adl_drop_rate": 0.75, "adl_threshold": 0.9},
    # Choe et al.'s FSL baseline: trained on the 100 held-out val images only (their boxes)
    "fsl": {"method": "fsl", "fsl_target": "auto"},
    # on the tiny ViT (configs/synth_vitmicro_{base,tscam,sat}.yaml): plain CAM, the baseline of
    # TS-CAM and SAT (compare differences each method against base of its own backbone)
    "vit_base": {"method": "base"},
    "tscam": {"method": "tscam"},
    "sat": {"method": "sat", "sat_area_thr": 0.25, "sat_blocks": 3},
}
_VIT = {
    "model": {"name": "vit_micro", "pretrained": None},
    "optim": {"optimizer": "adamw", "lr": 0.001, "head_lr_mult": 1.0, "weight_decay": 0.05,
              "scheduler": "cosine"},
}  # fmt: skip
#: where a method's recipe differs from DEMO_RECIPE (the FSL baseline's 100 training images
#: make 4 steps an epoch: it trains 40 epochs, still seconds)
RECIPE_CHANGES = {"fsl": {"epochs": 40}, "vit_base": _VIT, "tscam": _VIT, "sat": _VIT}
#: the shipped config each demo method's recipe equals (a test keeps them equal)
RECIPE_FILES = {
    "vit_base": "synth_vitmicro_base.yaml",
    "tscam": "synth_vitmicro_tscam.yaml",
    "sat": "synth_vitmicro_sat.yaml",
}


def recipe_file(method: str) -> str:
    """The name of the shipped config in configs/ that the demo's ``method`` trains."""
    return RECIPE_FILES.get(method, f"synth_smallcnn_{method}.yaml")
DEFAULT_METHODS = ("base", "cutmix")


def demo_recipe(method: str) -> dict:
    """The recipe of configs/synth_smallcnn_<method>.yaml, without the method section."""
    recipe = json.loads(json.dumps(DEMO_RECIPE))
    recipe.update(RECIPE_CHANGES.get(method, {}))
    return recipe


def demo_config(
    data_root: Path,
    method: str,
    seed: int,
    epochs: int | None = None,
    val_per_class: int | None = None,
):
    recipe = demo_recipe(method)
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


def check_methods(methods) -> tuple[str, ...]:
    """The demo's methods in the order given, ``base`` first (every difference is to it)."""
    methods = tuple(dict.fromkeys(methods))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(
            f"the demo has no recipe for {', '.join(unknown)}: choose from {', '.join(METHODS)}"
        )
    if not methods:
        raise ValueError("give at least one method")
    return ("base", *(m for m in methods if m != "base"))


def _center_baseline(data: Path, out: Path, progress: bool) -> Path:
    """The center-Gaussian baseline on the demo's test split (cheap: one map for all)."""
    from .config import DataConfig
    from .data.splits import load_split
    from .evaluate import evaluate_cams, save_result

    folder = out / "center_baseline"
    if not (folder / "per_image.csv").is_file():
        split = load_split(DataConfig(format="cub", root=str(data)), "test")
        result = evaluate_cams(None, None, baseline="center", split=split, progress=progress)
        context = {"run": "center baseline", "dataset": result["dataset"], "split": "test"}
        save_result(result, folder, {**context, "method": "center-baseline"}, echo=False)
    return folder


def run_demo(
    out: str | Path = "demo_out",
    seeds: int = 1,
    epochs: int | None = None,
    progress: bool = True,
    spec: SynthSpec = DEMO_SPEC,
    val_per_class: int | None = None,
    methods=DEFAULT_METHODS,
) -> dict:
    """Run the demo into ``out``; returns the paths of what it wrote (``spec`` and
    ``val_per_class`` shrink it for tests)."""
    from .evaluate import evaluate_checkpoint
    from .gallery import build_gallery
    from .report import answer_sentences, compare_runs
    from .runtime import run_finished
    from .train import train

    methods = check_methods(methods)
    out = Path(out)
    start = time.time()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = out / "data"
    if not _data_ready(data, spec):
        print(f"[demo] writing the synthetic data set to {data}")
        make_synthetic(data, spec, progress=progress)
    evals = []
    for seed in range(seeds):
        for method in methods:
            run = out / "runs" / f"{method}_seed{seed}"
            cfg = demo_config(data, method, seed, epochs, val_per_class)
            if not run_finished(run, cfg.epochs):
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
    baseline = _center_baseline(data, out, progress)
    print(f"[demo] comparing {', '.join(methods)} and the center baseline")
    written = compare_runs([*evals, baseline], out / "compare")
    first = {e.parent.name.rsplit("_seed", 1)[0]: e for e in reversed(evals)}
    # CutMix last: the "diff" selection shows where it gains and loses most against base
    order = sorted(methods, key=lambda m: m == "cutmix")
    columns = [first[m] for m in order]
    select = "diff" if len(columns) > 1 else "random"
    gallery = build_gallery(columns, out / "gallery", select=select, count=12)
    print((out / "compare" / "table.md").read_text())
    print(f"[demo] done in {time.time() - start:.0f} s")
    print(f"  table:    {out / 'compare' / 'table.md'} (and table.csv, runs.csv, differences.csv)")
    print(f"  curves:   {written['curves']}")
    print(f"  gallery:  {gallery['html']} and {gallery['png']}")
    print(f"  runs:     {out / 'runs'}")
    for sentence in answer_sentences(out / "compare" / "differences.csv"):
        print(sentence)
    return {**written, "gallery_html": gallery["html"], "gallery_png": gallery["png"]}
