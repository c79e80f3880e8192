"""OpenImages in wsolevaluation's layout: the synthetic writer, the reference's val cap
(num_val_sample_per_class), the ILSVRC proxy training set, and a CPU run that selects and
reports on PxAP."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from wsol.config import DataConfig, load_config
from wsol.data.records import DatasetSplit, ImageRecord
from wsol.data.splits import load_split
from wsol.data.synth import SynthSpec, make_synthetic_openimages
from wsol.data.wsolmeta import cap_per_class, read_wsol_metadata


@pytest.fixture(scope="module")
def openimages(tmp_path_factory):
    out = tmp_path_factory.mktemp("oi")
    spec = SynthSpec(classes=3, train=18, test=9, size=40, seed=1)
    return make_synthetic_openimages(out, spec, val=6, progress=False)


def test_the_synthetic_set_is_in_the_references_openimages_layout(openimages):
    meta = openimages["metadata"]
    # localization.txt: image_id,mask_path,ignore_path (the reference's OpenImages form); no
    # image_sizes.txt and no boxes
    line = (meta / "val" / "localization.txt").read_text().splitlines()[0]
    image_id, mask, ignore = line.split(",")
    assert image_id.startswith("val/") and mask.endswith(".png") and ignore.endswith("_ignore.png")
    assert not (meta / "test" / "image_sizes.txt").exists()
    test = read_wsol_metadata(meta / "test", openimages["root"], openimages["masks"])
    assert len(test) == 9 and test.has_masks and not test.has_boxes
    r = test.records[0]
    fg = np.asarray(Image.open(r.mask_paths[0])) > 0
    band = np.asarray(Image.open(r.ignore_path)) > 0
    assert fg.any() and band.any() and (band & ~fg).any()  # the band straddles the outline
    assert len(read_wsol_metadata(meta / "train", openimages["root"])) == 18


def test_the_val_cap_chooses_the_references_images():
    # wsolevaluation data_loaders.py (_adjust_samples_per_class) after main.py's
    # set_random_seed(seed): np.random.seed(seed), then for each label of np.unique(labels),
    # np.random.choice(indices of that label, n, replace=False), in that order
    labels = [2, 0, 1, 0, 2, 1, 0, 1, 2, 0, 1, 2, 0, 2, 1]
    records = [ImageRecord(f"i{k}", None, lab, None) for k, lab in enumerate(labels)]
    split = DatasetSplit("OpenImages", "val", records)
    for seed in (0, 3, 17):
        np.random.seed(seed)  # noqa: NPY002 (the reference's own legacy calls)
        ids = np.array([r.image_id for r in records])
        array = np.array(labels)
        expected = []
        for label in np.unique(array):
            chosen = np.random.choice(np.where(array == label)[0], 2, replace=False)  # noqa: NPY002
            expected += ids[chosen].tolist()
        assert [r.image_id for r in cap_per_class(split, 2, seed).records] == expected
    assert len(cap_per_class(split, 5, 0)) == 15
    with pytest.raises(ValueError, match="fewer images than that in 3 class"):
        cap_per_class(split, 6, 0)


def test_load_split_caps_val_with_the_runs_seed(openimages):
    data = DataConfig(
        format="wsol",
        root=str(openimages["root"]),
        masks=str(openimages["masks"]),
        metadata=str(openimages["metadata"]),
        val_per_class=2,
    )
    a, b = load_split(data, "val", seed=0), load_split(data, "val", seed=1)
    assert len(a) == len(b) == 6
    assert [r.image_id for r in a] != [r.image_id for r in b]
    assert len(load_split(data, "test", seed=0)) == 9  # only val is capped
    assert len(load_split(data, "train", seed=0)) == 18


def test_the_proxy_training_set(openimages, tmp_path):
    data = DataConfig(
        format="wsol",
        root=str(openimages["root"]),
        metadata=str(openimages["metadata"]),
        proxy_train=True,
    )
    with pytest.raises(FileNotFoundError, match="image_ids_proxy.txt"):
        load_split(data, "train")
    ids = (openimages["metadata"] / "train" / "image_ids.txt").read_text().split()
    proxy = openimages["metadata"] / "train" / "image_ids_proxy.txt"
    proxy.write_text("\n".join(ids[::3]) + "\n")
    try:
        assert [r.image_id for r in load_split(data, "train")] == ids[::3]
        proxy.write_text(ids[0] + "\ntrain/nope.jpg\n")
        with pytest.raises(ValueError, match="image_ids_proxy.txt:2: image id train/nope.jpg"):
            load_split(data, "train")
    finally:
        proxy.unlink()


def test_a_cpu_run_selects_and_reports_on_pxap(openimages, tmp_path):
    from wsol.evaluate import evaluate_checkpoint
    from wsol.train import train

    overrides = [
        "data.format=wsol",
        f"data.root={openimages['root']}",
        f"data.masks={openimages['masks']}",
        f"data.metadata={openimages['metadata']}",
        "data.val_per_class=2",
        "data.resize_size=36",
        "data.crop_size=32",
        "data.workers=0",
        "model.name=smallcnn",
        "model.pretrained=null",
        "batch_size=6",
        "epochs=1",
        "amp=none",
        "device=cpu",
        "select_metric=PxAP",
        "cam_curve_interval=0.05",
    ]
    out = tmp_path / "run"
    row = train(load_config(None, overrides), out, progress=False, echo=False)
    assert row["val_PxAP"] != "" and row["val_MaxBoxAccV2"] == ""
    assert (out / "best.pt").is_file()  # chosen on val PxAP
    result = evaluate_checkpoint(out, device="cpu", workers=0, progress=False, echo=False)
    assert 0.0 <= result["PxAP"] <= 100.0 and "MaxBoxAccV2" not in result


def test_data_synth_cli_writes_the_openimages_layout(tmp_path, capsys):
    from wsol.cli import main

    code = main(
        ["data", "synth", str(tmp_path / "s"), "--layout", "openimages", "--classes", "2",
         "--train", "4", "--test", "2", "--val", "3", "--size", "32", "--quiet"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "data.masks=" in out and "OpenImages layout" in out
    assert (tmp_path / "s" / "metadata" / "OpenImages" / "val" / "localization.txt").is_file()
