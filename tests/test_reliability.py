"""Clumsy and hostile inputs: a sentence naming the problem, never a silent wrong result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cpu_run
from PIL import Image

from wsol.cli import main
from wsol.config import load_config
from wsol.train import train

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _small(root, **extra) -> list[str]:
    return cpu_run(root, **extra)


def test_16_bit_images_are_scaled_not_clipped_to_white(tmp_path):
    from wsol.data.dataset import to_rgb

    ramp = np.linspace(0, 65535, 40 * 30).reshape(30, 40).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    Image.fromarray((ramp // 257).astype(np.uint8)).save(tmp_path / "flat.png")
    with Image.open(tmp_path / "deep.png") as deep, Image.open(tmp_path / "flat.png") as flat:
        assert deep.mode.startswith("I")
        got, want = np.asarray(to_rgb(deep)), np.asarray(flat.convert("RGB"))
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert got.mean() == pytest.approx(127.5, abs=1.0)  # PIL's convert("RGB") gives ~254


def test_a_checkpoint_is_refused_on_data_with_other_classes(tmp_path, capsys):
    from wsol.data import SynthSpec, make_synthetic

    four, three = tmp_path / "four", tmp_path / "three"
    make_synthetic(four, SynthSpec(classes=4, train=16, test=8, size=32, seed=1), progress=False)
    make_synthetic(three, SynthSpec(classes=3, train=12, test=6, size=32, seed=1), progress=False)
    train(load_config(None, _small(four)), tmp_path / "run", progress=False)
    code = main(["evaluate", str(tmp_path / "run"), "--data", str(three), "--quiet",
                 "--workers", "0"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "classifies 4 classes" in err and "has 3" in err and "Traceback" not in err


def test_an_empty_split_is_an_error_not_nan(tmp_path, capsys):
    from wsol.data.records import DatasetSplit
    from wsol.evaluate import evaluate_model
    from wsol.models import create_model

    empty = DatasetSplit(name="X", split="test", records=[])
    with pytest.raises(ValueError, match="test split of X has no image"):
        evaluate_model(create_model("smallcnn", 3), empty, progress=False)
    meta = tmp_path / "meta" / "test"
    meta.mkdir(parents=True)
    for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"):
        (meta / name).write_text("")
    assert main(["data", "check", str(meta), "--quiet"]) == 1
    assert "lists no image" in capsys.readouterr().out


def test_ids_that_leave_their_root_are_refused_with_file_and_line(tmp_path, capsys):
    from wsol.data import read_wsol_metadata
    from wsol.data.records import DataFormatError
    from wsol.rundir import cam_path

    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "image_ids.txt").write_text("a/ok.jpg\n../../etc/x.jpg\n/abs/y.jpg\n")
    (meta / "class_labels.txt").write_text("a/ok.jpg,0\n../../etc/x.jpg,0\n/abs/y.jpg,0\n")
    (meta / "image_sizes.txt").write_text(
        "a/ok.jpg,10,10\n../../etc/x.jpg,10,10\n/abs/y.jpg,10,10\n"
    )
    (meta / "localization.txt").write_text(
        "a/ok.jpg,1,1,5,5\n../../etc/x.jpg,1,1,5,5\n/abs/y.jpg,1,1,5,5\n"
    )
    with pytest.raises(
        DataFormatError, match=r"image_ids.txt:2: image id \.\./\.\./etc/x.jpg leaves"
    ):
        read_wsol_metadata(meta)
    assert main(["data", "check", str(meta), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "image_ids.txt:2" in out and "image_ids.txt:3" in out and "leaves its root" in out
    split = read_wsol_metadata(meta, allow_outside_root=True)  # asked for explicitly
    assert len(split) == 3
    # never written (or read) outside the output folder
    with pytest.raises(ValueError, match="leaves the CAM folder"):
        cam_path(tmp_path / "out", "../../evil.jpg")
    with pytest.raises(ValueError, match="leaves the CAM folder"):
        cam_path(tmp_path / "out", "/tmp/evil.jpg")
    assert cam_path(tmp_path / "out", "a/b.jpg") == tmp_path / "out" / "a" / "b.jpg.npy"


def test_cub_images_outside_the_root_are_refused(tiny_cub):
    from wsol.data import read_cub
    from wsol.data.records import DataFormatError

    text = (tiny_cub / "images.txt").read_text().replace("001.Alpha/a_2.jpg", "../../a_2.jpg")
    (tiny_cub / "images.txt").write_text(text)
    with pytest.raises(DataFormatError, match=r"images.txt:2: image \.\./\.\./a_2.jpg leaves"):
        read_cub(tiny_cub, "all")


def test_invalid_cams_error_by_default_or_zero_as_the_reference(synth_root, tmp_path, capsys):
    import json

    from wsol.data import convert_cub, read_wsol_metadata
    from wsol.localize import InvalidCAMError, prepare_scoremaps
    from wsol.metrics import LocalizationEvaluator, Protocol, ground_truth

    nan = np.ones((7, 7))
    nan[3, 3] = np.nan
    with pytest.raises(InvalidCAMError, match="CAM of a contains NaN"):
        prepare_scoremaps([nan], ["a"])
    with pytest.raises(InvalidCAMError, match="CAM of b contains inf"):
        prepare_scoremaps([np.full((7, 7), np.inf)], ["b"])
    (zeroed,) = prepare_scoremaps([nan], ["a"], invalid="zero")
    assert zeroed.shape == (224, 224) and not zeroed.any()
    # inference.py normalize_scoremap: a NaN CAM becomes zeros and is scored
    meta = convert_cub(synth_root, tmp_path / "meta", val_per_class=0)["test"]
    split = read_wsol_metadata(meta)
    ids = [r.image_id for r in split.records]
    rng = np.random.default_rng(0)
    cams = [rng.random((14, 14)) for _ in ids]
    cams[0] = nan
    zeros = [np.zeros((14, 14)), *cams[1:]]
    results = []
    for maps in (cams, zeros):
        ev = LocalizationEvaluator(ground_truth(split), Protocol(0.01, invalid_cams="zero"))
        ev.update(maps, ids)
        results.append(ev.compute())
    assert results[0]["box"] == results[1]["box"]
    assert results[0]["protocol"]["invalid_cams"] == "zero"
    folder = tmp_path / "cams"
    for image_id, cam in zip(ids, cams):
        (folder / image_id).parent.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{image_id}.npy", cam)
    args = ["evaluate", "--cams", str(folder), "--metadata", str(meta), "--quiet",
            "--cam-curve-interval", "0.01"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "e1")]) == 2
    assert "contains NaN" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "e2"), "--invalid-cams", "zero"]) == 0
    saved = json.loads((tmp_path / "e2" / "metrics.json").read_text())
    assert saved["protocol"]["invalid_cams"] == "zero"
    assert saved["MaxBoxAccV2"] == results[0]["MaxBoxAccV2"]


@pytest.mark.parametrize("kind", ["empty", "folder", "loop", "garbage"])
def test_unreadable_cam_files_are_named(synth_root, tmp_path, capsys, kind):
    from wsol.data import convert_cub, read_wsol_metadata

    meta = convert_cub(synth_root, tmp_path / "meta", val_per_class=0)["test"]
    ids = [r.image_id for r in read_wsol_metadata(meta).records]
    folder = tmp_path / "cams"
    for image_id in ids:
        (folder / image_id).parent.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{image_id}.npy", np.random.default_rng(0).random((7, 7)))
    bad = folder / f"{ids[3]}.npy"
    bad.unlink()
    if kind == "empty":
        bad.write_bytes(b"")
    elif kind == "folder":
        bad.mkdir()
    elif kind == "loop":
        bad.symlink_to(bad)
    else:
        bad.write_bytes(b"\\x93NUMPY garbage")
    code = main(["evaluate", "--cams", str(folder), "--metadata", str(meta), "--out",
                 str(tmp_path / "out"), "--quiet"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert f"CAM file {bad} of image {ids[3]}" in err and "Traceback" not in err


def test_disk_full_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    import torch

    from wsol.runtime import atomic_save

    path = tmp_path / "last.pt"
    atomic_save({"epoch": 1}, path)

    def full(obj, f, *a, **k):
        with open(f, "wb") as handle:
            handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(ValueError, match="no space left .* previous last.pt is kept"):
        atomic_save({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert list(tmp_path.iterdir()) == [path]  # no temporary left behind


def test_no_network_for_torchvision_weights_says_what_to_do(monkeypatch):
    import urllib.error

    from torchvision.models import ResNet18_Weights

    from wsol.models import create_model

    def offline(self, *a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(ResNet18_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline)
    with pytest.raises(ValueError, match=r"cannot download .* copy https://.* to .*checkpoints"):
        create_model("resnet18", 3, pretrained="torchvision")


def test_corrupt_image_during_evaluation_names_the_file(tmp_path, capsys):
    from wsol.data import SynthSpec, make_synthetic

    data = tmp_path / "data"
    make_synthetic(data, SynthSpec(classes=2, train=8, test=4, size=32, seed=1), progress=False)
    train(load_config(None, _small(data)), tmp_path / "run", progress=False)
    test_images = sorted((data / "images").rglob("*.jpg"))
    from wsol.data import read_cub

    victim = read_cub(data, "test").records[0].path
    assert victim in test_images
    victim.write_bytes(victim.read_bytes()[:-60])  # the header reads, the pixels do not
    import multiprocessing

    for workers in ("0", "1"):
        before = {c.pid for c in multiprocessing.active_children()}
        code = main(["evaluate", str(tmp_path / "run"), "--quiet", "--workers", workers,
                     "--out", str(tmp_path / f"e{workers}")])  # fmt: skip
        assert code == 2
        err = capsys.readouterr().err
        assert f"cannot read image {victim}" in err and "--skip-bad-images" in err
        assert "Traceback" not in err
        # the failed evaluation's loader workers are stopped, not left for a garbage collection
        assert {c.pid for c in multiprocessing.active_children()} <= before


def test_sizes_that_disagree_with_the_image_files_are_refused_at_evaluation(tmp_path, capsys):
    from wsol.data import SynthSpec, convert_cub, make_synthetic

    data = tmp_path / "data"
    make_synthetic(data, SynthSpec(classes=2, train=8, test=4, size=32, seed=2), progress=False)
    meta = convert_cub(data, tmp_path / "meta", val_per_class=0)["test"].parent
    sizes = meta / "test" / "image_sizes.txt"
    first = sizes.read_text().splitlines()
    image_id, w, h = first[0].split(",")
    sizes.write_text("\n".join([f"{image_id},{int(w) + 7},{h}", *first[1:]]) + "\n")
    over = ["data.format=wsol", f"data.metadata={meta}", f"data.masks={data / 'segmentations'}"]
    train(load_config(None, _small(data / "images", **dict(o.split("=", 1) for o in over))),
          tmp_path / "run", progress=False)  # fmt: skip
    assert main(["evaluate", str(tmp_path / "run"), "--quiet", "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert f"but its metadata says {int(w) + 7}x{h}" in err and "Traceback" not in err
    assert "--fix-sizes" in err
    # --fix-sizes evaluates with the file's size, and says so
    assert main(["evaluate", str(tmp_path / "run"), "--workers", "0", "--fix-sizes",
                 "--out", str(tmp_path / "fixed")]) == 0  # fmt: skip
    assert "corrected the size of 1 image(s)" in capsys.readouterr().out
    # and `wsol data check` with the image root finds it first
    assert main(["data", "check", str(meta), "--data", str(data), "--quiet"]) == 1
    assert f"metadata size {int(w) + 7}x{h} differs from the file's" in capsys.readouterr().out


def test_stray_labels_do_not_silently_grow_the_classifier(tmp_path):
    meta = tmp_path / "meta"
    for split in ("train", "test"):
        (meta / split).mkdir(parents=True)
    from PIL import Image

    ids = [f"i{k}.jpg" for k in range(4)]
    for image_id in ids:
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / image_id)
    labels = [0, 1, 0, 7]  # 7: a typo for 1
    for split in ("train", "test"):
        d = meta / split
        (d / "image_ids.txt").write_text("".join(f"{i}\n" for i in ids))
        (d / "class_labels.txt").write_text("".join(f"{i},{lab}\n" for i, lab in zip(ids, labels)))
        (d / "image_sizes.txt").write_text("".join(f"{i},20,20\n" for i in ids))
        (d / "localization.txt").write_text("".join(f"{i},1,1,10,10\n" for i in ids))
    cfg = load_config(None, _small(tmp_path, **{"data.format": "wsol", "data.metadata": str(meta)}))
    with pytest.raises(ValueError, match=r"classes 2, 3, 4, 5, 6 have no training image"):
        train(cfg, tmp_path / "run", progress=False)


def test_ctrl_c_keeps_the_last_checkpoint_and_says_how_to_resume(tmp_path, capsys, monkeypatch):
    from wsol.data import SynthSpec, make_synthetic

    data = tmp_path / "data"
    make_synthetic(data, SynthSpec(classes=2, train=16, test=4, size=32, seed=3), progress=False)
    import wsol.train as module

    calls = {"n": 0}
    real = module.train_one_epoch

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "train_one_epoch", interrupted)
    run = tmp_path / "run"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("{}\n")
    code = main(["train", str(cfg), "--out", str(run), "--quiet", *_small(data, epochs=3)])
    assert code == 130
    err = capsys.readouterr().err
    assert f"wsol train --resume --out {run}" in err and "Traceback" not in err
    import torch

    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 0  # epoch 1 is kept
    assert not (run / ".lock").exists() or _unlocked(run / ".lock")
    monkeypatch.undo()
    assert main(["train", "--resume", "--out", str(run), "--quiet"]) == 0


def _unlocked(path) -> bool:
    import fcntl

    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
    return True


def test_a_wsol_checkpoint_as_pretrained_weights(tmp_path):
    from wsol.data import SynthSpec, make_synthetic
    from wsol.models import create_model

    data = tmp_path / "data"
    make_synthetic(data, SynthSpec(classes=2, train=16, test=4, size=32, seed=3), progress=False)
    train(load_config(None, _small(data)), tmp_path / "run", progress=False)
    import torch

    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    model = create_model("smallcnn", 5, pretrained=tmp_path / "run" / "last.pt")
    for key, value in model.state_dict().items():
        if key.startswith("backbone."):
            assert torch.equal(value, saved[key]), key
    assert model.classifier.weight.shape == (5, 128)  # a new head for the new classes


# ------------------------------------------------------------------ data check: what train trips on
def _openimages(tmp_path):
    from wsol.data.synth import SynthSpec, make_synthetic_openimages

    spec = SynthSpec(classes=2, train=6, test=4, size=32, seed=5)
    return make_synthetic_openimages(tmp_path / "oi", spec, val=2, progress=False)


def test_data_check_finds_a_cut_short_image_without_deep(tmp_path, capsys):
    roots = _openimages(tmp_path)
    first = (roots["metadata"] / "test" / "image_ids.txt").read_text().split()[0]
    path = roots["root"] / first
    path.write_bytes(path.read_bytes()[:-200])  # cut short: no end-of-image marker
    argv = ["data", "check", str(roots["metadata"]), "--data", str(roots["root"]), "--masks",
            str(roots["masks"]), "--quiet"]  # fmt: skip
    assert main(argv) == 1
    assert f"image file {path} is cut short" in capsys.readouterr().out


def test_data_check_finds_a_missing_mask_line_and_a_class_without_training_images(tmp_path, capsys):
    roots = _openimages(tmp_path)
    loc = roots["metadata"] / "test" / "localization.txt"
    lines = loc.read_text().splitlines()
    loc.write_text("\n".join(lines[1:]) + "\n")  # the first test image loses its mask line
    train = roots["metadata"] / "train"
    ids = (train / "image_ids.txt").read_text().split()
    labels = dict(line.split(",") for line in (train / "class_labels.txt").read_text().split())
    keep = [i for i in ids if labels[i] == "0"]  # class 1 loses every training image
    (train / "image_ids.txt").write_text("".join(i + "\n" for i in keep))
    (train / "class_labels.txt").write_text("".join(f"{i},0\n" for i in keep))
    assert main(["data", "check", str(roots["metadata"]), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert f"{lines[0].split(',')[0]} has no mask (no mask line in the localization file)" in out
    assert "1 class(es) of 2 have no training image: 1 (synth001)" in out


def test_data_check_finds_a_box_missing_beside_a_mask(tmp_path, capsys):
    from wsol.data import SynthSpec, convert_cub, make_synthetic

    data = tmp_path / "data"
    make_synthetic(data, SynthSpec(classes=2, train=6, test=4, size=32, seed=2), progress=False)
    meta = convert_cub(data, tmp_path / "meta", val_per_class=0)["test"].parent
    boxes = meta / "test" / "localization.txt"
    lines = boxes.read_text().splitlines()
    boxes.write_text("\n".join(lines[1:]) + "\n")  # its mask stays in masks.txt
    assert main(["data", "check", str(meta), "--data", str(data), "--quiet"]) == 1
    image_id = lines[0].split(",")[0]
    assert f"{image_id} has no box (no line in the box file) although it has a mask" in (
        capsys.readouterr().out
    )


def test_data_check_refuses_floating_point_images_training_would_refuse(tmp_path, capsys):
    from wsol.data import SynthSpec, make_synthetic

    data = tmp_path / "data"
    make_synthetic(data, SynthSpec(classes=2, train=4, test=2, size=32, seed=2, image_format="png"),
                   progress=False)  # fmt: skip
    name = (data / "images.txt").read_text().split()[1]
    path = data / "images" / name
    tiff = path.with_suffix(".tif")
    w, h = Image.open(path).size
    Image.fromarray(np.zeros((h, w), np.float32), mode="F").save(tiff)
    path.unlink()
    text = (data / "images.txt").read_text().replace(name, str(Path(name).with_suffix(".tif")))
    (data / "images.txt").write_text(text)
    assert main(["data", "check", str(data), "--quiet"]) == 1
    assert "holds floating-point pixels (mode F), which training refuses" in capsys.readouterr().out


def test_the_default_check_says_what_it_did_not_check(tmp_path, capsys):
    roots = _openimages(tmp_path)
    assert main(["data", "check", str(roots["metadata"]), "--quiet"]) == 0
    assert "not checked: the image files were not opened" in capsys.readouterr().out
    assert main(["data", "check", str(roots["metadata"]), "--data", str(roots["root"]),
                 "--masks", str(roots["masks"]), "--quiet"]) == 0  # fmt: skip
    assert "--deep decodes every image" in capsys.readouterr().out


# ------------------------------------------------------------------ compare: never mix what differs
def _cam_eval(tmp_path, name, *, box="1,1,20,20", label="cam", extra=()):
    meta, cams = tmp_path / f"{name}_meta", tmp_path / f"{name}_cams"
    meta.mkdir()
    cams.mkdir()
    ids = [f"i{k}.jpg" for k in range(4)]
    (meta / "image_ids.txt").write_text("".join(i + "\n" for i in ids))
    (meta / "class_labels.txt").write_text("".join(f"{i},0\n" for i in ids))
    (meta / "image_sizes.txt").write_text("".join(f"{i},32,32\n" for i in ids))
    (meta / "localization.txt").write_text("".join(f"{i},{box}\n" for i in ids))
    rng = np.random.default_rng(len(name))
    for i in ids:
        np.save(cams / f"{i}.npy", rng.random((8, 8)).astype(np.float32))
    out = tmp_path / name
    assert main(["evaluate", "--cams", str(cams), "--metadata", str(meta), "--out", str(out),
                 "--quiet", "--label", label, "--cam-curve-interval", "0.05", *extra]) == 0  # fmt: skip
    return out


def test_compare_never_pools_evaluations_of_different_ground_truth(tmp_path, capsys):
    a = _cam_eval(tmp_path, "a")
    b = _cam_eval(tmp_path, "b", box="2,2,30,30")  # the same image ids, other boxes
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "c")]) == 2
    assert "different ground truth (data set)" in capsys.readouterr().err
    # as two methods they are not paired either, and the comparison says why
    other = _cam_eval(tmp_path, "o", box="2,2,30,30", label="other")
    assert main(["compare", str(a), str(other), "--out", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "not paired" in out and not (tmp_path / "d" / "differences.csv").exists()


def test_compare_never_pools_evaluations_of_different_protocol_settings(tmp_path, capsys):
    a = _cam_eval(tmp_path, "a")
    b = _cam_eval(tmp_path, "b", extra=("--iou", "50", "70"))
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "different protocol settings (iou_thresholds [30, 50, 70] vs [50, 70])" in err


def test_compare_says_which_evaluation_has_no_per_image_rows(tmp_path, capsys):
    a = _cam_eval(tmp_path, "a")
    b = _cam_eval(tmp_path, "b", label="other")
    (b / "per_image.csv").unlink()
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert f"{b} has no per_image.csv" in out and "nothing to difference" not in out


def test_compare_refuses_nan_rows_and_names_broken_json(tmp_path, capsys):
    a = _cam_eval(tmp_path, "a")
    b = _cam_eval(tmp_path, "b", label="other")
    rows = (b / "per_image.csv").read_text().splitlines()
    head = rows[0].split(",")
    cells = rows[2].split(",")
    cells[head.index("MaxBoxAccV2_score")] = "nan"
    (b / "per_image.csv").write_text("\n".join([*rows[:2], ",".join(cells), *rows[3:]]) + "\n")
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "c")]) == 2
    assert f"{b / 'per_image.csv'}:3: MaxBoxAccV2_score is" in capsys.readouterr().err
    text = (a / "metrics.json").read_text()
    (a / "metrics.json").write_text(text[: len(text) // 2])  # cut short
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert f"{a / 'metrics.json'}:" in err and "not valid JSON" in err


# ------------------------------------------------------------------ the file system says no
def _empty_config(tmp_path) -> str:
    path = tmp_path / "empty.yaml"
    path.write_text("{}\n")
    return str(path)


def test_a_name_longer_than_the_file_system_allows_is_a_sentence(synth_root, tmp_path, capsys):
    out = tmp_path / ("r" * 300)
    assert main(["train", _empty_config(tmp_path), "--out", str(out), *_small(synth_root)]) == 2
    err = capsys.readouterr().err
    assert "longer than the file system allows" in err and "Traceback" not in err


def test_a_read_only_output_folder_is_a_sentence(synth_root, tmp_path, capsys, monkeypatch):
    import errno
    from pathlib import Path

    real = Path.mkdir

    def refuse(self, *args, **kwargs):
        if "locked" in str(self):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)  # (root ignores chmod: refuse as the OS would)
    config = _empty_config(tmp_path)
    assert (
        main(["train", config, "--out", str(tmp_path / "locked" / "run"), *_small(synth_root)]) == 2
    )
    err = capsys.readouterr().err
    assert "cannot write" in err and "permission denied" in err and "locked" in err


def test_a_read_only_train_log_on_resume_fails_before_any_epoch(synth_root, tmp_path, capsys,
                                                                 monkeypatch):  # fmt: skip
    import builtins
    import errno

    run = tmp_path / "run"
    assert (
        main(["train", _empty_config(tmp_path), "--out", str(run), "--quiet", *_small(synth_root)])
        == 0
    )
    before = (run / "last.pt").read_bytes()
    real = builtins.open

    def guarded(file, mode="r", *args, **kwargs):
        if str(file).endswith("train.log") and "a" in mode:
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    assert main(["train", "--resume", "--out", str(run), "--quiet", "epochs=2"]) == 2
    assert f"cannot write {run / 'train.log'}: permission denied" in capsys.readouterr().err
    monkeypatch.undo()
    assert (run / "last.pt").read_bytes() == before  # nothing lost, nothing trained


def test_a_torch_write_failure_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import torch

    from wsol.runtime import atomic_save

    path = tmp_path / "last.pt"
    atomic_save({"epoch": 1}, path)

    def failing(obj, f, *a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed "
                           "writing file data/0: file write failed")  # fmt: skip

    monkeypatch.setattr(torch, "save", failing)
    with pytest.raises(ValueError, match="could not write .* the previous last.pt is kept"):
        atomic_save({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"epoch": 1}


def test_compare_and_gallery_replace_their_folder_whole_and_refuse_others(tmp_path, capsys):
    a = _cam_eval(tmp_path, "a")
    b = _cam_eval(tmp_path, "b", label="other")
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out), "--quiet"]) == 0
    (out / "stale.txt").write_text("from an earlier comparison")
    assert main(["compare", str(a), str(b), "--out", str(out), "--quiet"]) == 0
    assert not (out / "stale.txt").exists()  # replaced whole, not partly overwritten
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    assert main(["compare", str(a), str(b), "--out", str(mine), "--quiet"]) == 2
    assert "holds files that are not a comparison's" in capsys.readouterr().err
    assert (mine / "thesis.tex").read_text() == "precious"


def test_gallery_reads_folders_of_other_versions_or_says_why_not(tmp_path, capsys):
    import json

    from wsol.data import SynthSpec, convert_cub, make_synthetic

    data = tmp_path / "data"
    make_synthetic(data, SynthSpec(classes=2, train=4, test=4, size=32, seed=2), progress=False)
    meta = convert_cub(data, tmp_path / "meta", val_per_class=0)["test"]
    cams = tmp_path / "cams"
    for line in (meta / "image_ids.txt").read_text().split():
        (cams / line).parent.mkdir(parents=True, exist_ok=True)
        np.save(cams / f"{line}.npy", np.random.default_rng(0).random((8, 8)).astype(np.float32))
    ev = tmp_path / "ev"
    assert main(["evaluate", "--cams", str(cams), "--metadata", str(meta), "--out", str(ev),
                 "--quiet", "--cam-curve-interval", "0.05"]) == 0  # fmt: skip
    metrics = json.loads((ev / "metrics.json").read_text())
    metrics["context"]["a_key_of_a_later_version"] = 1
    (ev / "metrics.json").write_text(json.dumps(metrics))
    assert main(["gallery", str(ev), "--out", str(tmp_path / "g"), "--data", str(data / "images"),
                 "--count", "2", "--quiet"]) == 0  # fmt: skip
    del metrics["loc"]
    (ev / "metrics.json").write_text(json.dumps(metrics))
    assert main(["gallery", str(ev), "--out", str(tmp_path / "g2"), "--data", str(data / "images"),
                 "--quiet"]) == 2  # fmt: skip
    assert "holds no box evaluation" in capsys.readouterr().err


class _FailsAt(torch.utils.data.Dataset):
    def __init__(self, bad: int):
        self.bad = bad

    def __len__(self):
        return 12

    def __getitem__(self, i):
        if i == self.bad:
            raise OSError(f"image {i} is unreadable")
        return torch.zeros(2)


@pytest.mark.parametrize("how", ["error in a worker", "error in the loop", "break"])
def test_a_loop_that_ends_early_stops_its_loader_workers(how):
    import multiprocessing

    from wsol.data.dataset import batches_of

    before = {c.pid for c in multiprocessing.active_children()}
    loader = torch.utils.data.DataLoader(
        _FailsAt(5 if how == "error in a worker" else -1), batch_size=2, num_workers=1
    )

    def loop():
        for n, _ in enumerate(batches_of(loader)):
            if n == 1 and how == "error in the loop":
                raise ValueError("a size that disagrees")
            if n == 1 and how == "break":
                break

    if how == "break":
        loop()
        assert {c.pid for c in multiprocessing.active_children()} <= before
        return
    with pytest.raises((OSError, ValueError)) as held:
        loop()
    # the error and its traceback still held, as a caller would hold them: not the workers
    assert {c.pid for c in multiprocessing.active_children()} <= before
    assert ("image 5 is unreadable" if how == "error in a worker" else "a size") in str(held.value)
