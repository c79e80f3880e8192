"""One way to pass things: overrides anywhere on the line, one name per root, masks found and
checked before the first epoch, val_per_class refused where it means nothing."""

from __future__ import annotations

import shutil

import pytest
from conftest import cpu_run

from wsol.cli import main
from wsol.config import ConfigError, load_config
from wsol.data import convert_cub


@pytest.fixture(scope="module")
def run(synth_root, tmp_path_factory):
    from wsol.train import train

    out = tmp_path_factory.mktemp("one_way") / "run"
    train(load_config(None, cpu_run(synth_root, **{"data.val_per_class": 2})), out,
          progress=False, echo=False)  # fmt: skip
    return out


def test_overrides_stand_anywhere_on_an_evaluate_line(run, tmp_path):
    out = tmp_path / "e"
    assert main(["evaluate", "--workers", "0", str(run), "--out", str(out), "data.workers=0",
                 "--quiet"]) == 0  # fmt: skip
    assert (out / "metrics.json").is_file()
    with pytest.raises(SystemExit):  # anything else unknown is still an error
        main(["evaluate", str(run), "--bogus"])


def test_wsol_training_finds_segmentations_beside_images(synth_root, tmp_path):
    from wsol.train import train

    meta = convert_cub(synth_root, tmp_path / "meta", val_per_class=2)["val"].parent
    overrides = cpu_run(
        synth_root / "images", **{"data.format": "wsol", "data.metadata": str(meta)}
    )
    row = train(load_config(None, overrides), tmp_path / "run", progress=False, echo=False)
    assert row["val_PxAP"] != ""  # the val masks were found in synth/segmentations


def test_a_missing_mask_fails_before_the_first_epoch(synth_root, tmp_path):
    from wsol.train import train

    data = tmp_path / "synth"
    shutil.copytree(synth_root, data)
    meta = convert_cub(data, tmp_path / "meta", val_per_class=2)["val"].parent
    line = (meta / "val" / "masks.txt").read_text().splitlines()[0]
    missing = data / "segmentations" / line.split(",")[1]
    missing.unlink()
    overrides = cpu_run(data / "images", **{"data.format": "wsol", "data.metadata": str(meta)})
    with pytest.raises(FileNotFoundError, match=f"mask {missing} of image .* does not exist"):
        train(load_config(None, overrides), tmp_path / "run", progress=False, echo=False)
    assert not (tmp_path / "run" / "log.csv").exists()  # nothing trained


def test_val_per_class_is_refused_where_it_would_mean_nothing():
    with pytest.raises(ConfigError, match="val is the test split"):
        load_config(None, ["data.format=imagenet", "data.root=x", "data.val_per_class=5"])
    with pytest.raises(ConfigError, match="data.proxy_train: needs data.metadata"):
        load_config(None, ["data.format=wsol", "data.root=x", "data.proxy_train=true"])
