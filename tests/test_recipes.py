"""The recipes of the whole wsolevaluation table: generated, loadable, and honest about where
every tuned value comes from (scripts/make_recipes.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from wsol.config import flatten, load_config

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location(
        "make_recipes", ROOT / "scripts" / "make_recipes.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _generator()
CELLS = [(d, b, m) for d in gen.DATASETS for b in gen.BACKBONES for m in gen.METHODS]


def test_the_generated_files_are_up_to_date(capsys):
    # a hand edit of a recipe (or of the generator without rerunning it) fails here
    assert gen.main(["--check"]) == 0, capsys.readouterr().out


def test_a_drifted_recipe_is_found(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "reproduce.md").write_text(f"x\n{gen.DOC_BEGIN}\n{gen.DOC_END}\ny\n")
    assert gen.main([]) == 0
    assert gen.main(["--check"]) == 0
    path = tmp_path / "configs" / "cub_resnet50_has.yaml"
    path.write_text(path.read_text().replace("lr: 0.00361996526", "lr: 0.001"))
    assert gen.main(["--check"]) == 1
    assert "configs/cub_resnet50_has.yaml" in capsys.readouterr().out


def test_every_cell_of_the_table_has_a_recipe():
    assert len(CELLS) == 3 * 3 * 7
    for d, b, m in CELLS:
        cfg = load_config(ROOT / "configs" / f"{d}_{b}_{m}.yaml")
        assert (cfg.model.name, cfg.method.method) == (b, m)


def _flat(d, b, m) -> dict:
    return flatten(yaml.safe_load((ROOT / "configs" / f"{d}_{b}_{m}.yaml").read_text()))


KEY = {"lr": "optim.lr", "weight_decay": "optim.weight_decay"}
KEY["large_feature_map"] = "model.large_feature_map"


def _config_key(key: str) -> str:
    return KEY.get(key, f"method.{key}")


@pytest.mark.parametrize("data", ["cub", "imagenet", "openimages"])
@pytest.mark.parametrize("backbone", ["vgg16", "inception_v3", "resnet50"])
def test_recipes_of_a_backbone_differ_exactly_where_a_value_is_recorded(data, backbone):
    cam = _flat(data, backbone, "base")
    cam_values = {k: v for k, v, _ in gen.resolve(data, backbone, "base")}
    for method in gen.METHODS[1:]:
        other = _flat(data, backbone, method)
        differ = {k for k in set(cam) | set(other) if cam.get(k) != other.get(k)}
        resolved = {_config_key(k): v for k, v, _ in gen.resolve(data, backbone, method)}
        # the method's own section and whether a pretrained fc is kept are the method's
        free = {k for k in differ if k.startswith("method.")}
        free |= {"model.keep_pretrained_classifier"} & differ
        assert differ - free <= {_config_key(k) for k in cam_values}, (method, differ)
        for key in differ - free:
            assert other[key] == resolved[key], (method, key)
        # and every recorded value that is not CAM's shows up
        for key, value in resolved.items():
            assert other[key] == value, (method, key)


def test_the_issues_example_value_and_its_sources():
    # CUB ResNet-50 CAM trains at lr 0.00023222617 with large_feature_map TRUE: dual-cam's
    # scripts/run_train.sh ("2-1. resnet50_cam") and WSOL_RS's train_PN2.sh agree
    cfg = load_config(ROOT / "configs" / "cub_resnet50_base.yaml")
    assert cfg.optim.lr == 0.00023222617 and cfg.model.large_feature_map is True
    assert cfg.optim.weight_decay == 1e-4
    text = " ".join(
        (ROOT / "configs" / "cub_resnet50_base.yaml").read_text().replace("#", " ").split()
    )
    assert "finallyupper/dual-cam scripts/run_train.sh" in text
    assert "jjRen-xd/WSOL_RS train_PN2.sh" in text
    # the reference README's own command: OpenImages VGG16 CAM
    cfg = load_config(ROOT / "configs" / "openimages_vgg16_base.yaml")
    assert (cfg.optim.lr, cfg.optim.weight_decay) == (0.00227913316, 5e-4)
    assert cfg.model.large_feature_map is False


def test_cub_method_values_are_the_found_ones():
    # jjRen-xd/WSOL_RS train_PN2_other.sh / train_C45V2_other.sh (runs A1-A15 / B16-B30)
    cfg = load_config(ROOT / "configs" / "cub_vgg16_spg.yaml")
    m = cfg.method
    assert (m.spg_threshold_1h, m.spg_threshold_1l, m.spg_threshold_2h) == (0.29, 0.23, 0.03)
    assert (m.spg_threshold_2l, m.spg_threshold_3h, m.spg_threshold_3l) == (0.02, 0.82, 0.59)
    assert cfg.optim.lr == 0.00012558923
    cfg = load_config(ROOT / "configs" / "cub_inception_v3_cutmix.yaml")
    assert (cfg.method.cutmix_beta, cfg.method.cutmix_prob) == (0.04, 0.30)
    cfg = load_config(ROOT / "configs" / "cub_resnet50_adl.yaml")
    assert (cfg.method.adl_threshold, cfg.method.adl_drop_rate, cfg.optim.lr) == (
        0.76,
        0.24,
        0.01253438325,
    )


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: "_".join(c))
def test_every_header_names_a_source_or_says_not_tuned(cell):
    text = (ROOT / "configs" / f"{'_'.join(cell)}.yaml").read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    header = " ".join(header.replace("#", " ").split())
    for key, value, source in gen.resolve(*cell):
        entry = f"- {key} {gen._yaml_value(value)}: "
        assert entry in header, (cell, key)
        said = header.split(entry, 1)[1]
        assert said.startswith(("tuned: ", "NOT tuned", "ours")), (cell, key)
        if source.startswith("tuned"):
            files = [gen.SOURCES[n] for n in gen.SOURCES if gen.SOURCES[n] in source]
            assert files and all(f in header for f in files)


def test_no_value_is_called_tuned_without_a_copy():
    for cell in CELLS:
        found = gen.TUNED.get(cell, {})
        for key, value, source in gen.resolve(*cell):
            if source.startswith("tuned"):
                assert key in found and found[key][0] == value, (cell, key)
            else:
                assert key not in found, (cell, key)


def test_the_docs_table_lists_every_cell():
    doc = (ROOT / "docs" / "reproduce.md").read_text()
    table = doc.split(gen.DOC_BEGIN, 1)[1].split(gen.DOC_END, 1)[0]
    for cell in CELLS:
        assert f"| `{'_'.join(cell)}` |" in table
    # untuned values are in italics: ImageNet HaS keeps the code default grid 4
    row = next(r for r in table.splitlines() if r.startswith("| `imagenet_vgg16_has`"))
    assert "grid_size *4*" in row
