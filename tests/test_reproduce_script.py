"""scripts/reproduce_table.sh runs the whole table: every method of wsolevaluation's main table
on every backbone and data set, the FSL and center baselines, and the CutMix and TS-CAM papers'
recipes, each under its own protocol and the fair one, and TS-CAM's and SAT's recipes too."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "reproduce_table.sh"
DATA = ("cub", "imagenet", "openimages")
ARCHS = ("vgg16", "inception_v3", "resnet50")
METHODS = ("base", "has", "acol", "spg", "adl", "cutmix", "fsl")
PAPER = {
    f"configs/cub_{a}_{m}_paper.yaml" for a in ("vgg16", "resnet50") for m in ("base", "cutmix")
} | {f"configs/{d}_deit_small_{m}_paper.yaml" for d in ("cub", "imagenet") for m in ("tscam", "sat")}


def _grid() -> set[str]:
    return {f"configs/{d}_{a}_{m}.yaml" for d in DATA for a in ARCHS for m in METHODS}


def test_the_dry_run_lists_every_cell_and_runs_nothing(tmp_path):
    env = {**os.environ, "RUNS": str(tmp_path / "runs"), "PATH": "/usr/bin:/bin"}  # no wsol
    out = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "1", "1"], cwd=ROOT, env=env, check=True,
        capture_output=True, text=True,
    ).stdout.splitlines()  # fmt: skip
    trains = [line.split()[2] for line in out if line.startswith("wsol train ")]
    assert set(trains) == _grid() | PAPER and len(trains) == 63 + 8
    assert all((ROOT / t).is_file() for t in trains)
    centers = [line for line in out if "--baseline center" in line]
    assert len(centers) == 3 and any("--masks" in c for c in centers)  # OpenImages: PxAP
    assert not (tmp_path / "runs").exists()
    # the reference's one process at batch 32; GPUS > 1 launches torchrun
    out = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "1", "8"], cwd=ROOT,
        env={**env, "SKIP_IMAGENET": "1", "SKIP_OPENIMAGES": "1", "SKIP_PAPER": "1",
             "METHODS": "cutmix", "ARCHS": "resnet50", "SKIP_FSL": "1", "SKIP_TSCAM": "1",
             "SKIP_SAT": "1"},
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert "torchrun --nproc_per_node=8 -m wsol.cli train configs/cub_resnet50_cutmix.yaml" in out
    assert out.count(" train ") == 1


def test_the_script_trains_and_evaluates_the_whole_grid(tmp_path):
    log = tmp_path / "calls.txt"
    fake = tmp_path / "bin" / "wsol"
    fake.parent.mkdir()
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >> {log}\n')
    fake.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fake.parent}:{os.environ['PATH']}",
        "RUNS": str(tmp_path / "runs"),
    }
    subprocess.run(["bash", str(SCRIPT), "1", "1"], cwd=ROOT, env=env, check=True)
    calls = log.read_text().splitlines()
    trains = [c.split()[1] for c in calls if c.startswith("train ")]
    assert set(trains) == _grid() | PAPER and len(trains) == 63 + 8
    baselines = [c for c in calls if "--baseline center" in c]
    assert len(baselines) == 3  # CUB, ImageNet and OpenImages test splits
    evals = [c for c in calls if c.startswith("evaluate ") and "--baseline" not in c]
    # the grid; CutMix's, TS-CAM's and SAT's recipes under both protocols
    assert len(evals) == 63 + 12 + 4
    tscam = [c for c in evals if "deit_small_tscam" in c]
    assert sorted(c.split("--protocol ")[1].split()[0] for c in tscam) == [
        "tscam_cub", "tscam_ilsvrc", "wsolevaluation", "wsolevaluation"
    ]
    sat = [c for c in evals if "deit_small_sat" in c]
    assert sorted(c.split("--protocol ")[1].split()[0] for c in sat) == [
        "sat_cub", "sat_ilsvrc", "wsolevaluation", "wsolevaluation"
    ]
    compare = [c for c in calls if c.startswith("compare ")]
    assert len(compare) == 1 and compare[0].count("eval_test") == 79
    assert all(b.split("--out ")[1].split()[0] in compare[0] for b in baselines)
    openimages = [c for c in calls if c.startswith("train configs/openimages_")]
    assert all("data.masks=" in c for c in openimages)


def test_our_table_is_set_next_to_the_references(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "vs_reference", ROOT / "scripts" / "vs_reference.py"
    )
    vs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vs)
    # docs/reproduce.md: CutMix 59.4 (ImageNet VGG), 57.5 (CUB Inception), 62.8 (CUB ResNet);
    # ACoL on CUB ResNet +3.5 over CAM's 63.0; the center baseline 59.7 on CUB
    assert vs.reference_value("ILSVRC", "vgg16", "cutmix") == 59.4
    assert vs.reference_value("CUB", "inception_v3", "cutmix") == 57.5
    assert vs.reference_value("CUB", "resnet50", "cutmix") == 62.8
    assert vs.reference_value("CUB", "resnet50", "acol") == 66.5
    assert vs.reference_value("CUB", "", "center-baseline") == 59.7
    assert vs.reference_value("SYNTH", "smallcnn", "base") is None
    # the FSL baseline row, printed as absolute values: CUB InceptionV3 86.6, OpenImages
    # ResNet-50 74.4; OpenImages' center baseline 45.8 (PxAP)
    assert vs.reference_value("CUB", "inception_v3", "fsl") == 86.6
    assert vs.reference_value("OpenImages", "resnet50", "fsl") == 74.4
    assert vs.reference_value("OpenImages", "", "center-baseline") == 45.8
    table = tmp_path / "table.csv"
    table.write_text(
        "dataset,backbone,method,cam_method,protocol,MaxBoxAccV2,MaxBoxAccV2_std,seeds\n"
        "CUB,resnet50,cutmix,cam,wsolevaluation,63.0,0.5,3\n"
        "CUB,resnet50,cutmix,cam,cutmix2019,70.0,,1\n"
        "SYNTH,smallcnn,base,cam,wsolevaluation,90.0,,1\n"
    )
    with_pxap = tmp_path / "pxap.csv"
    with_pxap.write_text(
        "dataset,backbone,method,cam_method,protocol,PxAP,PxAP_std,seeds\n"
        "OpenImages,vgg16,fsl,cam,wsolevaluation,60.0,,1\n"
    )
    assert "| OpenImages | vgg16 | fsl | PxAP | 60.0 | 1 | 65.9 | -5.9 |" in vs.side_by_side(
        with_pxap
    )
    text = vs.side_by_side(table)
    assert "| CUB | resnet50 | cutmix | MaxBoxAccV2 | 63.0 ± 0.5 | 3 | 62.8 | +0.2 |" in text
    assert "cutmix2019" not in text and "SYNTH" not in text  # other protocols and data: left out
