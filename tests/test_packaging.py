"""What a non-editable install ships (the recipes, py.typed), and the command line's manners:
--version, descriptions on every subcommand, --quiet where a command prints progress."""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

from wsol.cli import build_parser, main
from wsol.config import find_recipe, list_recipes, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_the_package_list_is_every_package_folder():
    declared = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    folders = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "wsol").rglob("__init__.py")
    }
    assert folders <= declared, f"add {sorted(folders - declared)} to pyproject.toml's packages"
    assert {"wsol.configs", "wsol.configs.spaces"} <= declared


def test_recipes_are_found_by_name(tmp_path):
    path = find_recipe("cub_resnet50_cutmix")
    assert path.name == "cub_resnet50_cutmix.yaml" and load_config(path).method.method == "cutmix"
    assert find_recipe("cub_resnet50_cutmix.yaml") == path
    assert "openimages_vgg16_fsl" in list_recipes()
    own = tmp_path / "mine.yaml"
    own.write_text("epochs: 2\n")
    assert find_recipe(own) == own  # a file wins
    with pytest.raises(FileNotFoundError, match="recipes like it: cub_resnet50_cutmix"):
        find_recipe("cub_resnet50_cutmx")


def test_a_wheel_ships_the_recipes(tmp_path):
    import shutil

    src = tmp_path / "src"  # a copy: the build leaves its build/ folder there, not here
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("wsol", "configs"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(src)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("wsol-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "wsol/configs/cub_resnet50_cutmix.yaml" in names
    assert "wsol/configs/spaces/cutmix.yaml" in names and "wsol/py.typed" in names
    assert sum(n.startswith("wsol/configs/") and n.endswith(".yaml") for n in names) >= 63


def test_version_and_models(capsys):
    from wsol import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"wsol {__version__}"
    assert main(["models", "small*"]) == 0
    out = capsys.readouterr().out.splitlines()
    # the small CNN: 56 x 56 CAMs at 224 px, no large-feature-map option, its parameters
    assert out[0].startswith("model") and out[1].split()[:4] == ["smallcnn", "56", "x", "56"]
    assert out[1].split()[-1].replace(",", "").isdigit()
    assert main(["models", "--names"]) == 0
    assert "resnet50" in capsys.readouterr().out.split()


def _subcommands(parser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _subcommands(sub, (*prefix, name))


def test_every_subcommand_has_a_description_and_quiet_where_it_prints_progress():
    noisy = {("data", "synth"), ("data", "check"), ("evaluate",), ("train",), ("gallery",),
             ("compare",), ("sweep",), ("demo",)}  # fmt: skip
    for name, sub in _subcommands(build_parser()):
        assert sub.description, f"wsol {' '.join(name)} has no description"
        options = {o for a in sub._actions for o in a.option_strings}
        if name in noisy:
            assert "--quiet" in options, f"wsol {' '.join(name)} has no --quiet"
