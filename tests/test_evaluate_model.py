"""Model evaluation, CAM extraction, galleries, compare and the demo recipe."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import free_port

from wsol.cli import main
from wsol.config import load_config
from wsol.train import train

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    """Two tiny trained runs (base and CutMix) on a tiny synthetic set."""
    from wsol.data import SynthSpec, make_synthetic

    tmp = tmp_path_factory.mktemp("eval_runs")
    data = tmp / "data"
    make_synthetic(data, SynthSpec(classes=3, train=60, test=15, size=32, seed=2), progress=False)
    runs = {}
    for method in ("base", "cutmix"):
        overrides = [
            f"data.root={data}", "data.val_per_class=3", "data.resize_size=36", "data.crop_size=32",
            "data.workers=0", "model.name=smallcnn", "model.pretrained=null", "optim.lr=0.05",
            "optim.scheduler=none", "batch_size=16", "epochs=2", "amp=none", "device=cpu",
            "cam_curve_interval=0.05", f"method.method={method}",
        ]  # fmt: skip
        runs[method] = tmp / method
        train(load_config(None, overrides), runs[method], progress=False)
    return data, runs


def test_evaluate_checkpoint_writes_everything(trained_runs, tmp_path):
    data, runs = trained_runs
    out = tmp_path / "eval"
    args = [
        "evaluate",
        str(runs["base"]),
        "--out",
        str(out),
        "--quiet",
        "--val-threshold",
        "--save-cams",
    ]
    assert main([*args, "--cam-curve-interval", "0.01", "--workers", "0"]) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["images"] == 15
    for key in ("MaxBoxAcc", "MaxBoxAccV2", "PxAP"):
        assert 0 <= result[key] <= 100
    assert 0 <= result["classification"]["top1_acc"] <= 100
    assert result["loc"]["top1_loc@fixed"] <= result["loc"]["gt_known_loc@fixed"]
    val = json.loads((out / "val" / "metrics.json").read_text())
    assert result["loc"]["fixed_threshold"] == val["loc"]["best_threshold"]
    ctx = result["context"]
    assert ctx["method"] == "base" and ctx["backbone"] == "smallcnn" and ctx["split"] == "test"
    rows = (out / "per_image.csv").read_text().splitlines()
    assert len(rows) == 16 and rows[0].startswith("image_id,")
    saved = sorted((out / "cams").rglob("*.npy"))
    assert len(saved) == 15
    first = np.load(saved[0])  # the raw CAM: float32 at the feature map's 8 x 8 (32 px input)
    assert first.dtype == np.float32 and first.shape == (8, 8) and saved[0].stat().st_size < 512
    # the saved CAMs, evaluated as a CAM folder, give identical numbers
    from wsol.data import convert_cub

    meta = convert_cub(data, tmp_path / "meta", val_per_class=3)["test"]
    again = tmp_path / "again"
    assert main(["evaluate", "--cams", str(out / "cams"), "--metadata", str(meta), "--out", str(again), "--quiet",
                 "--cam-curve-interval", "0.01", "--threshold-from", str(out / "val" / "metrics.json")]) == 0  # fmt: skip
    second = json.loads((again / "metrics.json").read_text())
    assert second["box"] == result["box"]
    assert second["loc"]["gt_known_loc@fixed"] == result["loc"]["gt_known_loc@fixed"]


def test_gallery_and_compare(trained_runs, tmp_path):
    _, runs = trained_runs
    for run in runs.values():
        assert (
            main(
                ["evaluate", str(run), "--quiet", "--workers", "0", "--cam-curve-interval", "0.01"]
            )
            == 0
        )
    gallery = tmp_path / "gallery"
    assert (
        main(
            [
                "gallery",
                str(runs["base"]),
                str(runs["cutmix"]),
                "--out",
                str(gallery),
                "--count",
                "5",
                "--select",
                "diff",
            ]
        )
        == 0
    )
    assert (gallery / "gallery.png").stat().st_size > 0
    # for papers: the same grid as PDF and SVG; the legend names the colours
    assert (gallery / "gallery.pdf").stat().st_size > 0 and (gallery / "gallery.svg").is_file()
    assert "vermillion" in (gallery / "gallery.svg").read_text()
    page = (gallery / "index.html").read_text()
    sources = re.findall(r"src='([^']+)'", page)
    assert len(sources) == 10  # 5 images x 2 runs
    assert all((gallery / s).is_file() for s in sources)
    assert "http" not in page  # opens offline
    # class names, not labels; how the images were chosen; a filter per run; the class table
    assert "Synth_00" in page and "gains most IoU over" in page and "loses most" in page
    assert "class wrong (" in page and page.count("<option value='1:") == 2
    assert "Mean IoU per class" in page and page.count("<tr><td>") >= 3  # 3 classes
    for how in ("best", "worst", "random", "class"):
        assert (
            main(
                [
                    "gallery",
                    str(runs["base"]),
                    "--out",
                    str(tmp_path / how),
                    "--count",
                    "3",
                    "--select",
                    how,
                ]
            )
            == 0
        )

    compare = tmp_path / "compare"
    assert (
        main(
            [
                "compare",
                str(runs["base"]),
                str(runs["cutmix"]),
                "--out",
                str(compare),
                "--bootstrap",
                "200",
            ]
        )
        == 0
    )
    import pandas as pd

    table = pd.read_csv(compare / "table.csv")
    assert sorted(table["method"]) == ["base", "cutmix"]
    assert {"MaxBoxAcc", "MaxBoxAccV2", "top1_acc", "PxAP"} <= set(table.columns)
    diffs = pd.read_csv(compare / "differences.csv")
    # the protocol's headline (MaxBoxAccV2) first, the other box metric, and PxAP (masks)
    assert list(diffs["metric"]) == ["MaxBoxAccV2", "MaxBoxAcc", "PxAP"]
    assert list(diffs["headline"]) == [True, False, False]
    boxes = diffs[diffs["metric"] != "PxAP"]
    assert (boxes["ci95_low"] <= boxes["difference"]).all() and (
        boxes["difference"] <= boxes["ci95_high"]
    ).all()
    # one seed per side: the box intervals resample images only, PxAP has none
    assert set(boxes["resampled"]) == {"images (one seed per side)"}
    assert diffs["ci95_low"].iloc[2] != diffs["ci95_low"].iloc[2]  # NaN
    runs_csv = pd.read_csv(compare / "runs.csv")
    assert {
        "dataset",
        "split",
        "backbone",
        "method",
        "seed",
        "metric",
        "value",
        "cam_curve_interval",
    } <= set(runs_csv.columns)
    assert (compare / "maxboxacc_curves.png").is_file() and (compare / "pxap_curves.png").is_file()
    for name in ("maxboxacc_curves", "pxap_curves"):
        assert (compare / f"{name}.pdf").is_file() and (compare / f"{name}.svg").is_file()
    # a panel per IoU evaluated and one for MaxBoxAccV2
    svg = (compare / "maxboxacc_curves.svg").read_text()
    assert all(f"MaxBoxAcc@{d}" in svg for d in (30, 50, 70)) and "MaxBoxAccV2" in svg


def test_paired_bootstrap_interval():
    from wsol.report import paired_bootstrap

    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 400).astype(float)
    mean, lo, hi = paired_bootstrap(a, a, 300)
    assert mean == lo == hi == 0.0
    b = np.clip(a + (rng.random(400) < 0.3), 0, 1)
    mean, lo, hi = paired_bootstrap(a, b, 300)
    assert 0 < lo < mean < hi


def test_ddp_evaluation_equals_single_process(trained_runs, tmp_path):
    _, runs = trained_runs
    single = tmp_path / "single"
    assert (
        main(
            [
                "evaluate",
                str(runs["base"]),
                "--out",
                str(single),
                "--quiet",
                "--workers",
                "0",
                "--cam-curve-interval",
                "0.01",
            ]
        )
        == 0
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}", "-m", "wsol.cli",
           "evaluate", str(runs["base"]), "--out", str(tmp_path / "ddp"), "--quiet", "--workers", "0",
           "--cam-curve-interval", "0.01", "--device", "cpu"]  # fmt: skip
    subprocess.run(cmd, check=True, env=env, timeout=300)
    a = json.loads((single / "metrics.json").read_text())
    b = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    for key in ("box", "loc", "classification", "PxAP", "images"):
        assert a[key] == b[key], key
    assert (single / "per_image.csv").read_text() == (
        tmp_path / "ddp" / "per_image.csv"
    ).read_text()


def test_demo_recipe_matches_the_shipped_configs():
    from wsol.demo import METHODS, demo_recipe, recipe_file

    root = Path(__file__).parent.parent / "configs"
    for method, params in METHODS.items():
        cfg = yaml.safe_load((root / recipe_file(method)).read_text())
        assert cfg["method"] == params
        for section, values in demo_recipe(method).items():
            if isinstance(values, dict):
                assert {k: cfg[section].get(k) for k in values} == values, section
            else:
                assert cfg[section] == values, section


def test_demo_methods_are_checked_and_base_comes_first():
    from wsol.demo import check_methods

    assert check_methods(["spg", "cutmix"]) == ("base", "spg", "cutmix")
    assert check_methods(["cutmix", "base", "cutmix"]) == ("base", "cutmix")
    with pytest.raises(ValueError, match="no recipe for mixup: choose from base, cutmix, has"):
        check_methods(["mixup"])


def test_demo_end_to_end_small(tmp_path, capsys):
    from wsol.data import SynthSpec
    from wsol.demo import run_demo

    spec = SynthSpec(classes=3, train=45, test=12, size=32, seed=4)
    written = run_demo(
        tmp_path / "demo", seeds=1, epochs=1, progress=False, spec=spec, val_per_class=3
    )
    for key in ("table", "differences", "curves", "gallery_html", "gallery_png"):
        assert Path(written[key]).is_file(), key
    printed = capsys.readouterr().out
    assert "| base |" in printed and "| center-baseline |" in printed
    assert (
        "Does CutMix localize better than plain CAM (SYNTH, smallcnn, wsolevaluation protocol)?"
        in printed
    )
    assert "95% interval" in printed.splitlines()[-1]
    # a second run keeps what is done
    mtime = (tmp_path / "demo" / "runs" / "base_seed0" / "last.pt").stat().st_mtime
    run_demo(tmp_path / "demo", seeds=1, epochs=1, progress=False, spec=spec, val_per_class=3)
    assert (tmp_path / "demo" / "runs" / "base_seed0" / "last.pt").stat().st_mtime == mtime


def test_both_protocols_on_the_same_models_and_compare_shows_both(trained_runs, tmp_path, capsys):
    _, runs = trained_runs
    evals = []
    for method, run in runs.items():
        for protocol in ("wsolevaluation", "cutmix2019"):
            out = tmp_path / f"{method}_{protocol}"
            args = ["evaluate", str(run), "--out", str(out), "--quiet", "--workers", "0"]
            assert main([*args, "--protocol", protocol, "--cam-curve-interval", "0.01"]) == 0
            evals.append(str(out))
    paper = json.loads((tmp_path / "base_cutmix2019" / "metrics.json").read_text())
    assert paper["protocol"]["name"] == "cutmix2019"
    assert paper["loc"]["fixed_threshold"] == pytest.approx(0.15)
    assert paper["loc"]["contour_mode"] == "single" and "top1_loc@fixed" in paper["loc"]
    # a run folder's default output keeps the two protocols apart
    assert main(["evaluate", str(runs["base"]), "--protocol", "cutmix2019", "--quiet",
                 "--workers", "0", "--cam-curve-interval", "0.05"]) == 0  # fmt: skip
    from wsol.evaluate import eval_folder_name
    from wsol.metrics import named_protocol

    # (its own threshold step makes it a folder of its own too: eval_test_cutmix2019_p<hash>)
    name = eval_folder_name(protocol=named_protocol("cutmix2019", cam_curve_interval=0.05))
    assert name.startswith("eval_test_cutmix2019_p")
    assert (runs["base"] / name / "metrics.json").is_file()
    # the preset fixes threshold and contours: contradicting flags are refused, with a sentence
    assert main(["evaluate", str(runs["base"]), "--protocol", "cutmix2019", "--threshold", "0.3",
                 "--quiet"]) == 2  # fmt: skip
    assert "fixes the threshold" in capsys.readouterr().err
    compare = tmp_path / "compare"
    assert main(["compare", *evals, "--out", str(compare), "--bootstrap", "50"]) == 0
    import pandas as pd

    table = pd.read_csv(compare / "table.csv")
    assert sorted(zip(table["method"], table["protocol"])) == [
        ("base", "cutmix2019"),
        ("base", "wsolevaluation"),
        ("cutmix", "cutmix2019"),
        ("cutmix", "wsolevaluation"),
    ]
    assert (table["seeds"] == 1).all()  # the two protocols are never pooled as seeds
    assert "| protocol |" in (compare / "table.md").read_text()


def test_gallery_never_overlays_an_older_evaluations_cams(trained_runs, tmp_path):
    from wsol.gallery import _scoremaps, _split, load_eval

    _, runs = trained_runs
    shared, fresh = tmp_path / "shared", tmp_path / "fresh"
    base = ["evaluate", "--quiet", "--workers", "0", "--cam-curve-interval", "0.05"]
    assert main([*base, str(runs["base"]), "--out", str(shared), "--save-cams"]) == 0
    # the cutmix model into the same folder is refused (another evaluation); with --overwrite
    # it replaces the folder whole, and the base model's cams/ go with it
    assert main([*base, str(runs["cutmix"]), "--out", str(shared)]) == 2
    assert main([*base, str(runs["cutmix"]), "--out", str(shared), "--overwrite"]) == 0
    assert not (shared / "cams").exists()
    assert main([*base, str(runs["cutmix"]), "--out", str(fresh), "--save-cams"]) == 0
    stale_run, fresh_run = load_eval(shared), load_eval(fresh)
    ids = fresh_run.order[:4]
    records = _split(fresh_run, None).by_id()
    got = _scoremaps(stale_run, ids, records)
    want = _scoremaps(fresh_run, ids, records)
    for i in ids:
        np.testing.assert_allclose(got[i], want[i], atol=1e-5)


def test_results_files_respect_the_umask(tmp_path):
    from wsol.runtime import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        atomic_write_text(tmp_path / "b.json", "{}")
        assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_gallery_files_of_ids_that_read_alike_do_not_collide(tmp_path):
    from PIL import Image

    from wsol.gallery import build_gallery

    ids = ["a/b.jpg", "a_b.jpg", "a b.jpg"]
    meta, images, cams = tmp_path / "meta", tmp_path / "images", tmp_path / "cams"
    meta.mkdir()
    rng = np.random.default_rng(0)
    for k, image_id in enumerate(ids):
        (images / image_id).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(images / image_id)
        (cams / image_id).parent.mkdir(parents=True, exist_ok=True)
        np.save(cams / f"{image_id}.npy", rng.random((7, 7)) + k)
    (meta / "image_ids.txt").write_text("".join(f"{i}\n" for i in ids))
    (meta / "class_labels.txt").write_text("".join(f"{i},0\n" for i in ids))
    (meta / "image_sizes.txt").write_text("".join(f"{i},40,40\n" for i in ids))
    (meta / "localization.txt").write_text("".join(f"{i},5,5,30,30\n" for i in ids))
    out = tmp_path / "eval"
    assert main(["evaluate", "--cams", str(cams), "--metadata", str(meta), "--out", str(out),
                 "--quiet", "--cam-curve-interval", "0.05"]) == 0  # fmt: skip
    written = build_gallery([out], tmp_path / "g", select="random", count=3, images_root=images)
    files = sorted((tmp_path / "g" / "images").glob("*.png"))
    assert len(files) == 3 and written["html"].is_file()


def test_hierarchical_bootstrap_carries_the_seed_variance():
    from wsol.report import hierarchical_bootstrap, paired_bootstrap

    rng = np.random.default_rng(1)
    images = rng.random(300)
    a = np.stack([images] * 3)  # three seeds that agree
    b = np.stack([images + 0.30, images + 0.02, images - 0.20])  # three that do not
    mean, lo, hi = hierarchical_bootstrap(a, b, 1000)
    assert mean == pytest.approx(0.04)
    _, lo_img, hi_img = paired_bootstrap(a.mean(axis=0), b.mean(axis=0), 1000)
    assert hi_img - lo_img < 1e-9  # averaged over seeds, every image moves by the same 0.04
    assert lo < 0 < hi and hi - lo > 0.3  # the seeds disagree: the interval says so
    one = hierarchical_bootstrap(a[:1], b[:1], 500, seed=3)
    assert one == paired_bootstrap(a[0], b[0], 500, seed=3)


def test_paired_seeds_are_drawn_together():
    # two CAM methods on the same checkpoints: seed k of one side and of the other are one
    # run, so a resample that draws seed k draws it for both (the seeds' spread cancels)
    from wsol.report import hierarchical_bootstrap

    rng = np.random.default_rng(2)
    a = rng.random((1, 200)) + np.array([[0.0], [0.5], [-0.4]])  # three seeds far apart
    b = a + 0.1  # the second CAM method adds 0.1 on every image of every checkpoint
    mean, lo, hi = hierarchical_bootstrap(a, b, 500, paired=True)
    assert mean == pytest.approx(0.1) and lo == pytest.approx(0.1) and hi == pytest.approx(0.1)
    _, lo, hi = hierarchical_bootstrap(a, b, 500)  # drawn apart: the seeds' spread shows
    assert hi - lo > 0.3
    with pytest.raises(ValueError, match="as many rows"):
        hierarchical_bootstrap(a, b[:2], 10, paired=True)


def _copy_run(src: Path, dst: Path, **config_changes) -> Path:
    """A copy of a run with its evaluation, its config changed, its metrics pointing at it."""
    import shutil

    import yaml

    shutil.copytree(src, dst)
    cfg = yaml.safe_load((dst / "config.yaml").read_text())
    for dotted, value in config_changes.items():
        node = cfg
        *path, last = dotted.split(".")
        for key in path:
            node = node[key]
        node[last] = value
    (dst / "config.yaml").write_text(yaml.safe_dump(cfg))
    metrics = json.loads((dst / "eval_test" / "metrics.json").read_text())
    metrics["context"]["checkpoint"] = str(dst / "last.pt")
    (dst / "eval_test" / "metrics.json").write_text(json.dumps(metrics))
    return dst


def test_compare_refuses_to_pool_different_settings_and_repeated_seeds(
    trained_runs, tmp_path, capsys
):
    from wsol.report import PoolingError, compare_runs

    _, runs = trained_runs
    args = [
        "evaluate",
        str(runs["base"]),
        "--quiet",
        "--workers",
        "0",
        "--cam-curve-interval",
        "0.05",
    ]
    assert main([*args, "--out", str(runs["base"] / "eval_test")]) == 0
    longer = _copy_run(runs["base"], tmp_path / "longer", epochs=12, seed=1)
    same_seed = _copy_run(runs["base"], tmp_path / "same_seed")
    other_seed = _copy_run(runs["base"], tmp_path / "other_seed", seed=1)
    with pytest.raises(PoolingError, match=r"differ in epochs \(2 vs 12\): not seeds of one"):
        compare_runs([runs["base"], longer], tmp_path / "c1", n_boot=50)
    with pytest.raises(PoolingError, match="are both seed 0"):
        compare_runs([runs["base"], same_seed], tmp_path / "c2", n_boot=50)
    with pytest.raises(PoolingError, match="evaluate the same"):
        compare_runs([runs["base"], runs["base"] / "eval_test"], tmp_path / "c3", n_boot=50)
    compare_runs([runs["base"], other_seed], tmp_path / "c4", n_boot=50)  # two seeds: fine
    assert not (tmp_path / "c4" / "differences.csv").exists()  # one method: nothing to difference

    # a label makes the longer run a row of its own, differenced against base
    metrics = json.loads((longer / "eval_test" / "metrics.json").read_text())
    metrics["context"]["method"] = "base-12ep"
    (longer / "eval_test" / "metrics.json").write_text(json.dumps(metrics))
    assert main(["compare", str(runs["base"]), str(longer), "--out", str(tmp_path / "c5"),
                 "--bootstrap", "50"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "Does base-12ep localize better than plain CAM" in printed


def test_evaluate_label_names_the_row(trained_runs, tmp_path):
    _, runs = trained_runs
    out = tmp_path / "labelled"
    args = ["evaluate", str(runs["cutmix"]), "--quiet", "--workers", "0", "--label", "cutmix-b1"]
    assert main([*args, "--out", str(out), "--cam-curve-interval", "0.1"]) == 0
    context = json.loads((out / "metrics.json").read_text())["context"]
    assert context["method"] == "cutmix-b1" and context["trained_method"] == "cutmix"


def test_one_way_to_override_everywhere(trained_runs, tmp_path, capsys):
    data, runs = trained_runs
    out = tmp_path / "bare"
    # key=value after the run folder, as `wsol train` takes them; --set still works
    args = ["evaluate", str(runs["base"]), "data.workers=0", "--quiet", "--out", str(out),
            "--cam-curve-interval", "0.1", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    assert json.loads((out / "metrics.json").read_text())["context"]["data"]["workers"] == 0
    printed = capsys.readouterr().out
    assert str(out / "per_image.csv") in printed  # every written file is named
    assert main(["evaluate", "data.workers=0", "--quiet"]) != 0
    assert "give the run folder or checkpoint first" in capsys.readouterr().err
    # the gallery takes --data like evaluate (and --images, its old name) and --device auto
    gallery = [
        "gallery",
        str(out),
        "--out",
        str(tmp_path / "g"),
        "--count",
        "2",
        "--device",
        "auto",
    ]
    assert main([*gallery, "--data", str(data)]) == 0
    assert (tmp_path / "g" / "index.html").is_file()


def test_diff_selection_shows_gains_and_losses():
    from wsol.gallery import EvalRun, select_images

    def run(ious):
        rows = {f"i{k}": {"image_id": f"i{k}", "iou": v} for k, v in enumerate(ious)}
        loc = {"best_threshold": 0.5}
        return EvalRun(Path("."), {"loc": loc}, rows, list(rows))

    first = run([0.5] * 8)
    last = run([0.9, 0.1, 0.6, 0.5, 0.2, 0.8, 0.5, 0.45])  # gains: i0, i5; losses: i1, i4
    assert select_images([first, last], "diff", 4) == ["i0", "i5", "i1", "i4"]


def test_every_kind_of_evaluation_gets_its_own_folder():
    from wsol.evaluate import eval_folder_name
    from wsol.metrics import Protocol, named_protocol

    assert eval_folder_name() == "eval_test"
    assert eval_folder_name("val") == "eval_val"
    assert eval_folder_name(protocol=named_protocol("cutmix2019")) == "eval_test_cutmix2019"
    assert eval_folder_name(cam_method="scorecam", checkpoint="best") == "eval_test_scorecam_best"
    assert eval_folder_name(val_threshold=True) == "eval_test_valthr"
    assert eval_folder_name(fixed_threshold=0.25) == "eval_test_thr0.25"
    # protocol settings other than a named protocol's get a part of their own, one per setting
    a = eval_folder_name(protocol=Protocol(cam_curve_interval=0.01))
    b = eval_folder_name(protocol=Protocol(iou_thresholds=(50,)))
    assert a.startswith("eval_test_p") and b.startswith("eval_test_p") and a != b


def test_a_second_evaluation_never_mixes_with_the_first(trained_runs, tmp_path, capsys):
    _, runs = trained_runs
    run = tmp_path / "run"
    shutil.copytree(runs["base"], run, ignore=shutil.ignore_patterns("eval_*"))
    common = ["--quiet", "--workers", "0"]
    assert main(["evaluate", str(run), "--save-cams", "--val-threshold", *common]) == 0
    first = run / "eval_test_valthr"
    assert (first / "cams").is_dir() and (first / "val").is_dir()
    before = (first / "metrics.json").read_text()
    # another CAM method goes to its own folder; the first is untouched
    assert main(["evaluate", str(run), "--cam-method", "gradcam", *common]) == 0
    second = run / "eval_test_gradcam"
    assert json.loads((second / "metrics.json").read_text())["context"]["cam_method"] == "gradcam"
    assert not (second / "cams").exists() and not (second / "val").exists()
    assert (first / "metrics.json").read_text() == before
    # an --out that holds another evaluation is refused before any work ...
    capsys.readouterr()
    assert (
        main(["evaluate", str(run), "--out", str(first), "--cam-method", "gradcam", *common]) == 2
    )
    err = capsys.readouterr().err
    assert (
        "holds another evaluation (cam_method 'cam', not 'gradcam'" in err and "--overwrite" in err
    )
    assert (first / "metrics.json").read_text() == before
    # ... or replaced whole with --overwrite: no stale cams/ or val/ of the old one
    assert main(["evaluate", str(run), "--out", str(first), "--cam-method", "gradcam",
                 "--overwrite", *common]) == 0  # fmt: skip
    assert not (first / "cams").exists() and not (first / "val").exists()
    # the same evaluation again replaces its own folder without --overwrite
    assert main(["evaluate", str(run), "--cam-method", "gradcam", *common]) == 0
    assert not list(run.glob(".eval_*"))  # no staging folder left


def test_a_failed_evaluation_leaves_the_previous_folder_whole(trained_runs, tmp_path, monkeypatch):
    import wsol.evaluate as ev

    _, runs = trained_runs
    run = tmp_path / "run"
    shutil.copytree(runs["base"], run, ignore=shutil.ignore_patterns("eval_*"))
    common = ["--quiet", "--workers", "0"]
    assert main(["evaluate", str(run), "--save-cams", *common]) == 0
    before = sorted(p.relative_to(run) for p in (run / "eval_test").rglob("*"))

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ev, "save_result", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        main(["evaluate", str(run), "--save-cams", *common])
    assert sorted(p.relative_to(run) for p in (run / "eval_test").rglob("*")) == before
    assert (run / "eval_test" / "metrics.json").is_file()
    assert not list(run.glob(".eval_test*"))  # the half-written stage is gone


def test_compare_never_pools_runs_trained_with_another_number_of_processes(tmp_path):
    from wsol.report import PoolingError, check_pooling

    def run(name: str, seed: int, world: int) -> dict:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "batch_size": 32}))
        runtime = {"from_epoch": 1, "world_size": world, "batch_size": 32,
                   "global_batch": 32 * world, "device": "cpu", "torch": "2.x", "wsol": "0.1.0"}  # fmt: skip
        return {"dataset": "CUB", "backbone": "resnet50", "method": "base",
                "checkpoint": str(folder / "last.pt"), "folder": str(folder),
                "runtime": [runtime]}  # fmt: skip

    check_pooling([run("a", 0, 1), run("b", 1, 1)])  # seeds of one setting
    with pytest.raises(PoolingError, match=r"runtime.global_batch \('32' vs '64'\)"):
        check_pooling([run("c", 0, 1), run("d", 1, 2)])


def test_each_protocols_comparison_uses_its_headline_metric(trained_runs, tmp_path):
    # cutmix2019's headline is the paper's top-1 loc at its fixed threshold 0.15 (Table 9);
    # per image: the IoU at that threshold >= 0.5 and the top-1 class right
    from wsol.report import answer_sentences, compare_runs

    _, runs = trained_runs
    evals = []
    for method, run in runs.items():
        out = tmp_path / method
        assert main(["evaluate", str(run), "--out", str(out), "--quiet", "--workers", "0",
                     "--protocol", "cutmix2019"]) == 0  # fmt: skip
        evals.append(out)
    written = compare_runs(evals, tmp_path / "compare", n_boot=100)
    import pandas as pd

    diffs = pd.read_csv(written["differences"])
    head = diffs[diffs["headline"]].iloc[0]
    assert head["metric"] == "top1_loc@fixed" and head["protocol"] == "cutmix2019"
    per = {m: pd.read_csv(tmp_path / m / "per_image.csv") for m in runs}
    score = {
        m: (((f["iou_fixed"] >= 0.5) & (f["top1_correct"] == 1)) * 100.0).mean()
        for m, f in per.items()
    }
    assert head["difference"] == pytest.approx(score["cutmix"] - score["base"])
    metrics = {m: json.loads((tmp_path / m / "metrics.json").read_text()) for m in runs}
    assert score["base"] == pytest.approx(metrics["base"]["loc"]["top1_loc@fixed"])
    (sentence,) = answer_sentences(written["differences"])
    assert "cutmix2019 protocol" in sentence and "top1_loc@fixed" in sentence


def test_differences_flag_rows_trained_on_different_schedules(trained_runs, tmp_path):
    from wsol.report import compare_runs

    data, runs = trained_runs
    longer = tmp_path / "cutmix_longer"
    shutil.copytree(runs["cutmix"], longer, ignore=shutil.ignore_patterns("eval_*"))
    assert main(["train", "--resume", "--out", str(longer), "--quiet", "epochs=3"]) == 0
    evals = []
    for name, run in (("base", runs["base"]), ("cutmix", longer)):
        out = tmp_path / f"e_{name}"
        assert main(["evaluate", str(run), "--out", str(out), "--quiet", "--workers", "0"]) == 0
        evals.append(out)
    written = compare_runs(evals, tmp_path / "compare", n_boot=50)
    import pandas as pd

    note = pd.read_csv(written["differences"])["note"].iloc[0]
    assert note.startswith("trained on different schedules: epochs 2 vs 3")


def test_overlapped_evaluation_equals_the_sequential_one(trained_runs):
    # the box sweep of a batch runs in a worker thread while the next batch's CAMs are
    # extracted: every number must be the same as one after the other
    import torch

    from wsol.config import config_from_dict
    from wsol.data.splits import load_split
    from wsol.evaluate import evaluate_model
    from wsol.metrics import Protocol
    from wsol.runtime import load_checkpoint_model

    _, runs = trained_runs
    model, cfg, _ = load_checkpoint_model(runs["base"], torch.device("cpu"))
    split = load_split(config_from_dict(cfg).data, "test")
    common = dict(crop_size=32, batch_size=4, workers=0, progress=False)
    a = evaluate_model(model, split, Protocol(cam_curve_interval=0.01), overlap=True, **common)
    b = evaluate_model(model, split, Protocol(cam_curve_interval=0.01), overlap=False, **common)
    assert a["box"] == b["box"] and a["PxAP"] == b["PxAP"] and a["loc"] == b["loc"]
    assert a["per_image"] == b["per_image"]


def test_the_sweep_overlaps_only_where_it_has_cores_of_its_own(monkeypatch):
    # on an accelerator every core is the sweep's; on the CPU only those torch's threads leave
    import torch

    from wsol import evaluate

    monkeypatch.setattr(evaluate, "_cpu_cores", lambda: 4)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert evaluate.sweep_cores(torch.device("cpu")) == 0
    assert evaluate.sweep_cores(torch.device("cuda", 0)) == 4
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    assert evaluate.sweep_cores(torch.device("cpu")) == 1
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    assert evaluate.sweep_cores(torch.device("cpu")) == 0


def test_the_default_evaluation_picks_overlap_from_the_free_cores(trained_runs, monkeypatch):
    import concurrent.futures

    import torch

    from wsol import evaluate
    from wsol.config import config_from_dict
    from wsol.data.splits import load_split
    from wsol.metrics import Protocol
    from wsol.runtime import load_checkpoint_model

    _, runs = trained_runs
    model, cfg, _ = load_checkpoint_model(runs["base"], torch.device("cpu"))
    split = load_split(config_from_dict(cfg).data, "test")
    made = []
    real = concurrent.futures.ThreadPoolExecutor

    def spy(*args, **kwargs):
        made.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate, "ThreadPoolExecutor", spy)
    common = dict(crop_size=32, batch_size=4, workers=0, progress=False)
    for cores, overlaps in ((0, False), (1, True)):
        made.clear()
        monkeypatch.setattr(evaluate, "sweep_cores", lambda device, c=cores: c)
        evaluate.evaluate_model(model, split, Protocol(cam_curve_interval=0.01), **common)
        assert any(k.get("initargs") == (cores,) for k in made) == overlaps


def test_cam_methods_are_paired_by_checkpoint_not_by_seed_alone():
    # --across cam_method draws a seed's two evaluations together only where both read the same
    # checkpoint file; the same seeds of different runs are drawn apart, with a note saying so
    import pandas as pd

    from wsol.report import _differences

    rng = np.random.default_rng(0)
    ids = [f"img{i}" for i in range(40)]

    def evaluation(cam_method, seed, checkpoint, shift):
        context = {"dataset": "CUB", "backbone": "resnet50", "method": "cutmix",
                   "cam_method": cam_method, "seed": seed, "checkpoint": checkpoint,
                   "protocol": "wsolevaluation", "gt_fingerprint": "g"}  # fmt: skip
        scores = np.clip(50 + 30 * rng.standard_normal(40) + shift, 0, 100)
        return context, pd.DataFrame({"image_id": ids, "MaxBoxAccV2_score": scores})

    same = [evaluation(c, s, f"runs/s{s}/last.pt", 5.0 * (c == "bagcams")) for c in ("cam", "bagcams") for s in (0, 1)]  # fmt: skip
    rows = _differences(same, 50, 0, across="cam_method")
    assert rows and all(r["note"] == "" for r in rows)
    other = [evaluation("cam", s, f"runs/s{s}/last.pt", 0) for s in (0, 1)] + [
        evaluation("bagcams", s, f"elsewhere/s{s}/last.pt", 5) for s in (0, 1)
    ]
    rows = _differences(other, 50, 0, across="cam_method")
    assert rows and all("not read on the same checkpoints" in r["note"] for r in rows)


def test_nothing_to_difference_is_said_of_what_was_compared(tmp_path):
    from wsol.report import answer_sentences

    (said,) = answer_sentences(tmp_path / "differences.csv")
    assert said.startswith("Only one method per data set and backbone")
    (said,) = answer_sentences(tmp_path / "differences.csv", across="cam_method")
    assert said.startswith("Only one CAM method per training method, data set and backbone")


def test_a_cam_method_sentence_counts_each_sides_seeds_when_they_differ(tmp_path):
    import pandas as pd

    from wsol.report import answer_sentences

    row = {"dataset": "CUB", "backbone": "resnet50", "method": "cutmix", "cam_method": "bagcams",
           "baseline": "cam", "across": "cam_method", "protocol": "wsolevaluation",
           "metric": "MaxBoxAccV2", "headline": True, "difference": 1.0, "ci95_low": 0.5,
           "ci95_high": 1.5, "resampled": "seeds and images", "images": 10,
           "seeds_method": 3, "seeds_baseline": 3, "note": ""}  # fmt: skip
    path = tmp_path / "differences.csv"
    pd.DataFrame([row]).to_csv(path, index=False)
    (said,) = answer_sentences(path)
    assert "10 test images, 3 seeds)" in said
    pd.DataFrame([{**row, "seeds_baseline": 2}]).to_csv(path, index=False)
    (said,) = answer_sentences(path)
    assert "10 test images, 3 and 2 seeds)" in said
