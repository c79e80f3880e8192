"""BagCAMs (Zhu et al., ECCV 2022) as a CAM method of evaluation, pinned against the official
``libs/cams/bagcams.py`` of zh460045050/BagCAMs on shared name-seeded weights (fixtures made by
scripts/make_bagcams_fixtures.py, which runs the official wrapper; not needed here)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from wsol.cam import CAM_METHODS, bagcam_maps, bagcams, extract

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location(
    "make_bagcams_fixtures", ROOT / "scripts" / "make_bagcams_fixtures.py"
)
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)
EXPECTED = np.load(ROOT / "tests" / "fixtures" / "methods" / "bagcams.npz")


@pytest.mark.parametrize("case", sorted(fixtures.CASES))
def test_matches_the_official_bagcams(case):
    # cases: the feature map of a small CNN, a ResNet-18 and a tiny ViT, and ResNet-18's layer3
    # and layer2, where the gradient passes guided through later ReLU modules (without that
    # guiding, layer3's maps differ from the official ones by 0.26)
    model, images = fixtures.case_model(case), fixtures.case_input(case)
    labels = torch.from_numpy(EXPECTED[f"{case}_labels"])
    logits = torch.from_numpy(EXPECTED[f"{case}_logits"])
    with torch.no_grad():
        torch.testing.assert_close(model(images), logits, rtol=1e-4, atol=1e-4)
    # the odd images' labels are their bottom logits: the official log() of a negative logit
    picked = logits[torch.arange(len(labels)), labels]
    assert (picked[1::2] < 0).all() and (picked[0::2] > 0).all()
    maps = bagcams(model, images, labels, fixtures.CASES[case][2])
    assert maps.shape == images.shape[:1] + images.shape[2:]
    torch.testing.assert_close(maps, torch.from_numpy(EXPECTED[f"{case}_maps"]), rtol=0, atol=5e-4)


def test_the_regional_weights_are_the_mean_of_g_times_f_plus_one_and_relu_comes_per_channel():
    # bagcams.py generate: term_1 = avgpool(g * f + 1), sum_c relu(term_1 * g * f)
    f = torch.tensor([[[[1.0, 3.0]], [[2.0, -2.0]]]])  # (1, 2, 1, 2)
    g = torch.tensor([[[[0.5, 0.5]], [[1.0, 1.0]]]])
    # channel 0: g f = (0.5, 1.5), weight mean + 1 = 2 -> (1, 3); channel 1: g f = (2, -2),
    # weight 1 -> (2, -2) -> relu (2, 0); sum (3, 3). A ReLU after the sum would give (3, 1).
    torch.testing.assert_close(bagcam_maps(f, g), torch.tensor([[[3.0, 3.0]]]))


def test_a_constant_map_is_zero_and_the_model_is_left_as_it_was():
    model = fixtures.case_model("smallcnn").train()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()  # every feature and logit 0: a flat map (the reference's 0/0, then zeros)
    maps = bagcams(model, torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))
    assert torch.equal(maps, torch.zeros(2, 32, 32))
    assert model.training
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def test_every_method_s_model_gives_bagcams():
    # post hoc: it reads any model wsol trains, a method's own head included (ACoL, SPG, ADL,
    # TS-CAM on the tiny ViT)
    from wsol.methods import MethodConfig, create_method
    from wsol.models import create_model

    for name, backbone, size in [("base", "smallcnn", 32), ("acol", "smallcnn", 32),
                                 ("spg", "smallcnn", 32), ("adl", "smallcnn", 32),
                                 ("tscam", "vit_micro", 64), ("sat", "vit_micro", 64)]:  # fmt: skip
        torch.manual_seed(0)
        method = create_method(MethodConfig(name))
        model = method.adapt_model(create_model(backbone, 3))
        x = torch.randn(2, 3, size, size)
        logits, maps = extract(model, x, torch.tensor([0, 2]), "bagcams", method.cams)
        assert logits.shape == (2, 3) and maps.shape == (2, size, size), name
        assert torch.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1, name


def test_the_cli_offers_every_cam_method_and_a_layer_after_the_at_sign(capsys):
    from wsol.cli import build_parser

    parser = build_parser()
    evaluate = parser._subparsers._group_actions[0].choices["evaluate"]
    action = next(a for a in evaluate._actions if "--cam-method" in a.option_strings)
    help_text = action.help
    assert all(name in help_text for name in CAM_METHODS)
    args = parser.parse_args(["evaluate", "RUN", "--cam-method", "bagcams@backbone.layer3"])
    assert args.cam_method == "bagcams@backbone.layer3"
    for bad, why in [("cams", "unknown CAM method 'cams'"), ("cam@backbone.3", "feature map only"),
                     ("gradcam@", "name a layer after @")]:  # fmt: skip
        with pytest.raises(SystemExit):
            parser.parse_args(["evaluate", "RUN", "--cam-method", bad])
        assert why in capsys.readouterr().err, bad


def test_a_layer_other_than_the_feature_map():
    from wsol.models import create_model

    torch.manual_seed(0)
    model = create_model("smallcnn", 3)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    for name in ("gradcam", "bagcams"):
        _, last = extract(model, x, y, name)
        _, inner = extract(model, x, y, f"{name}@backbone.3")
        assert inner.shape == last.shape and not torch.allclose(inner, last, atol=1e-3), name
    with pytest.raises(
        ValueError, match=r"no layer 'backbone.9'; its layers: backbone, backbone.0"
    ):
        extract(model, x, y, "bagcams@backbone.9")
    # a transformer block gives tokens, not a map: a sentence, not a shape error inside
    vit = create_model("vit_micro", 3)
    with pytest.raises(ValueError, match=r"layer backbone.blocks.1 gives \(2, 65, 64\), not a"):
        extract(vit, torch.randn(2, 3, 64, 64), y, "bagcams@backbone.blocks.1")


def test_evaluate_a_trained_run_with_bagcams(tmp_path, synth_root, capsys):
    from wsol.cli import main
    from wsol.config import load_config
    from wsol.train import train

    overrides = [
        f"data.root={synth_root}", "data.workers=0", "model.name=smallcnn",
        "model.pretrained=null", "optim.scheduler=none", "batch_size=16", "epochs=1",
        "amp=none", "device=cpu", "cam_curve_interval=0.05",
    ]  # fmt: skip
    run = tmp_path / "run"
    train(load_config(None, overrides), run, progress=False)
    assert main(["evaluate", str(run), "--cam-method", "bagcams", "--quiet", "--workers", "0"]) == 0
    metrics = json.loads((run / "eval_test_bagcams" / "metrics.json").read_text())
    # a layer the model does not have: a sentence naming its layers, no folder left
    assert main(["evaluate", str(run), "--cam-method", "bagcams@nope", "--quiet"]) == 2
    assert "has no layer 'nope'; its layers: backbone" in capsys.readouterr().err
    assert not (run / "eval_test_bagcams@nope").exists() and not list(run.glob(".eval_*"))
    assert metrics["context"]["cam_method"] == "bagcams"
    assert main(["evaluate", str(run), "--quiet", "--workers", "0"]) == 0
    plain = json.loads((run / "eval_test" / "metrics.json").read_text())
    assert 0 <= metrics["MaxBoxAccV2"] <= 100 and metrics["PxAP"] != plain["PxAP"]
    # wsol compare --across cam_method: BagCAMs against CAM on the same checkpoint
    import pandas as pd

    out = tmp_path / "compare"
    evals = [str(run / "eval_test"), str(run / "eval_test_bagcams")]
    assert main(["compare", *evals, "--out", str(out), "--bootstrap", "20",
                 "--across", "cam_method"]) == 0  # fmt: skip
    diffs = pd.read_csv(out / "differences.csv")
    assert set(diffs["across"]) == {"cam_method"} and set(diffs["method"]) == {"base"}
    assert set(diffs["cam_method"]) == {"bagcams"} and set(diffs["baseline"]) == {"cam"}
    headline = diffs[diffs["headline"].astype(str).str.lower() == "true"].iloc[0]
    assert headline["metric"] == "MaxBoxAccV2"
    assert headline["difference"] == pytest.approx(metrics["MaxBoxAccV2"] - plain["MaxBoxAccV2"])
    said = capsys.readouterr().out
    assert "Does BagCAMs localize better than CAM (" in said
    assert "the checkpoints of plain CAM" in said  # the training method, base
    shutil.rmtree(run)
