"""SAT (Wu et al., ICCV 2023) pinned against wpy1999/SAT's own model: fixtures made by
scripts/make_sat_fixtures.py, which runs the official ``Model/SAT.py`` on shared name-seeded
weights (the official code is not needed here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wsol.methods import (
    MethodConfig,
    MixedBatch,
    batch_area_loss,
    create_method,
    gaussian_kernel,
    normalization_loss,
)
from wsol.models import create_model

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location(
    "make_sat_fixtures", ROOT / "scripts" / "make_sat_fixtures.py"
)
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)
EXPECTED = np.load(ROOT / "tests" / "fixtures" / "methods" / "sat.npz")


def test_matches_the_official_model():
    method, model = fixtures.our_model()
    x, y = fixtures.fixed_input()
    with torch.no_grad():
        logits, features = model.forward_with_features(x)
        maps = method.cams(model, features, y)
        _, loss = method.training_loss(model, MixedBatch(x, y, y, 1.0))
    # both in float64 (the maps come out as float32, as the evaluator reads them)
    torch.testing.assert_close(logits, torch.from_numpy(EXPECTED["logits"]), rtol=1e-9, atol=1e-12)
    expected_maps = torch.from_numpy(EXPECTED["maps"]).float()
    torch.testing.assert_close(maps, expected_maps, rtol=0, atol=1e-7)
    # train.py: CE + |ba_loss.mean(0) - area_thr| + norm_loss.mean(0)
    torch.testing.assert_close(loss, torch.from_numpy(EXPECTED["loss"]), rtol=1e-9, atol=1e-12)
    assert 0.05 < float(maps.std())  # the fixture's maps are not flat


def test_the_kernel_and_both_constraints_are_the_official_ones():
    # SAT.py get_kernel(kernlen=3, nsig=6), stored by the official model as its `weight`
    torch.testing.assert_close(gaussian_kernel(), torch.from_numpy(EXPECTED["kernel"]).float())
    maps = torch.from_numpy(EXPECTED["maps"])
    # phase='train' returns per image mean(mask) and mean((1 - g * mask) * (g * mask))
    ba, norm = torch.from_numpy(EXPECTED["batch_area"]), torch.from_numpy(EXPECTED["norm"])
    torch.testing.assert_close(batch_area_loss(maps, 0.25), (ba.mean() - 0.25).abs())
    torch.testing.assert_close(normalization_loss(maps, gaussian_kernel()), norm.mean())
    # the area loss is of the batch's mean, not the mean of each image's distance
    two = torch.stack([torch.zeros(4, 4), torch.full((4, 4), 0.5)])
    assert float(batch_area_loss(two, 0.25)) == 0.0


def test_only_the_last_blocks_are_spatial_aware():
    # SAT.py Attention: the mask multiplies the attention only where cur_depth >= 9 (the last 3
    # of 12); earlier blocks are timm's attention
    from timm.models.vision_transformer import Attention

    method = create_method(MethodConfig("sat", sat_blocks=1))
    model = method.adapt_model(create_model("vit_micro", 3)).eval()
    x = torch.randn(2, 1 + 64 + 1, 64)
    with torch.no_grad():
        for index, block in enumerate(model.backbone.blocks):
            same = torch.allclose(block.attn(x), Attention.forward(block.attn, x), atol=1e-6)
            assert same == (index < 2), index
        features = model.forward_features(torch.randn(2, 3, 64, 64))
        assert len(model.method_head._masks) == 1
    assert method.cams(model, features, torch.tensor([0, 1])).shape == (2, 8, 8)


def test_the_deit_small_model_has_the_official_size():
    # timm's deit_small without its head (21,665,664), the 3 x 3 conv to 200 classes (691,400),
    # the spatial-aware token and its position embedding (2 x 384): deit_sat_small_patch16_224
    model = create_method(MethodConfig("sat")).adapt_model(create_model("deit_small", 200))
    assert sum(p.numel() for p in model.parameters()) == 22_357_832


@pytest.mark.parametrize(
    "params,error",
    [
        ({"sat_area_thr": 1.5}, "sat_area_thr: must be in [0, 1], not 1.5"),
        ({"sat_blocks": 0}, "sat_blocks: must be at least 1, not 0"),
    ],
)
def test_parameters_out_of_range_are_refused(params, error):
    assert MethodConfig("sat", **params).check() == [error]


def test_a_cnn_and_too_many_blocks_are_refused_with_a_sentence():
    with pytest.raises(ValueError) as err:
        create_method(MethodConfig("sat")).adapt_model(create_model("smallcnn", 3))
    assert str(err.value) == (
        "SAT adds a token to a vision transformer's tokens: SmallCNN is not one (use model.name "
        "deit_small, deit_base or vit_micro)"
    )
    twice = create_method(MethodConfig("sat")).adapt_model(create_model("vit_micro", 3))
    with pytest.raises(ValueError, match="^SAT's token is added once, to a model without a"):
        create_method(MethodConfig("sat")).adapt_model(twice)
    assert MethodConfig("sat", sat_blocks=1).check() == []  # one block is enough
    with pytest.raises(ValueError, match="sat_blocks 4 is more than the model's 3 blocks"):
        create_method(MethodConfig("sat", sat_blocks=4)).adapt_model(create_model("vit_micro", 3))


def test_every_parameter_learns_and_the_map_needs_its_own_forward_pass():
    method, model = fixtures.our_model()
    model.train()
    x, y = fixtures.fixed_input()
    logits, loss = method.training_loss(model, MixedBatch(x, y, y, 1.0))
    assert float(loss.detach()) > float(F.cross_entropy(logits.detach(), y))  # constraints added
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(RuntimeError, match="^no SAT maps recorded for these features"):
        method.cams(model, torch.zeros(2, 32, 7, 7), y)


@pytest.mark.parametrize(
    "name,lr,epochs,batch,area",
    [
        # train.py's defaults: --lr 1e-4, --epochs 30, --batch_size 256, --area_thr 0.25
        ("cub_deit_small_sat_paper", 1e-4, 30, 256, 0.25),
        # train_ImageNet.py's: --lr 1.5e-5, --batch_size 512, --area_thr 0.35, one epoch (its
        # loop breaks after the first)
        ("imagenet_deit_small_sat_paper", 1.5e-5, 1, 512, 0.35),
    ],
)
def test_the_sat_recipes_train_as_the_official_code(name, lr, epochs, batch, area):
    from wsol.config import load_config
    from wsol.train import build_optimizer, lr_factor

    cfg = load_config(ROOT / "configs" / f"{name}.yaml")
    assert (cfg.model.name, cfg.method.method, cfg.epochs, cfg.batch_size) == (
        "deit_small", "sat", epochs, batch,
    )  # fmt: skip
    assert (cfg.method.sat_area_thr, cfg.method.sat_blocks) == (area, 3)
    # create_optimizerv2 with --opt adamw, --weight_decay 0.05; --drop_path 0.1
    assert (cfg.optim.optimizer, cfg.optim.weight_decay, cfg.optim.head_lr_mult) == (
        "adamw", 0.05, 1.0,
    )  # fmt: skip
    assert cfg.model.drop_path_rate == 0.1
    assert cfg.model.pretrained.endswith("deit_small_patch16_224-cd65a155.pth")
    # the cosine schedule train.py computes is never applied: the rate is constant
    assert [cfg.optim.lr * lr_factor(cfg, e) for e in range(cfg.epochs)] == [lr] * epochs
    model = create_method(MethodConfig("sat")).adapt_model(create_model("vit_micro", 7))
    rates = [g["lr"] for g in build_optimizer(model, cfg).param_groups]
    assert rates == pytest.approx([lr] * len(rates))


def test_adamw_leaves_the_spatial_aware_token_undecayed():
    # SAT.py no_weight_decay: {'pos_embed', 'cls_token', 'loc_embed', 'loc_token'}
    from wsol.config import load_config
    from wsol.train import build_optimizer

    model = create_method(MethodConfig("sat")).adapt_model(create_model("vit_micro", 3))
    cfg = load_config(ROOT / "configs" / "synth_vitmicro_sat.yaml")
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {names[id(p)]: g["weight_decay"] for g in build_optimizer(model, cfg).param_groups
             for p in g["params"]}  # fmt: skip
    for name in ("method_head.loc_token", "method_head.loc_embed", "backbone.pos_embed",
                 "backbone.cls_token"):  # fmt: skip
        assert decay[name] == 0.0, name
    assert decay["method_head.conv.weight"] == 0.05


@pytest.mark.parametrize("area_thr,blocks", [(0.0, 1), (1.0, 3)])
def test_sat_at_its_edges_trains_a_batch_of_one_and_a_flat_image(area_thr, blocks):
    # the extremes of both parameters (area 0 and 1; one block, every block of vit_micro), a
    # batch of one (the batch area loss is that image's), and an all-zero image
    method = create_method(MethodConfig("sat", sat_area_thr=area_thr, sat_blocks=blocks))
    model = method.adapt_model(create_model("vit_micro", 3))
    for x in (torch.randn(1, 3, 64, 64), torch.zeros(1, 3, 64, 64)):
        y = torch.tensor([2])
        logits, loss = method.training_loss(model, MixedBatch(x, y, y, 1.0))
        maps = model.method_head.spatial_map(model.forward_features(x))
        assert torch.isfinite(loss) and maps.shape == (1, 8, 8)
        assert len(model.method_head._masks) == blocks
        expected = F.cross_entropy(logits, y) + (maps.mean() - area_thr).abs()
        assert float(loss.detach()) >= float(expected.detach()) - 1e-6  # + the norm loss >= 0
        loss.backward()


def test_the_normalization_loss_is_zero_on_binary_flat_maps_and_largest_at_one_half():
    # mean((1 - s) s): 0 where the smoothed map is 0 or 1 everywhere, 1/4 where it is 1/2
    kernel = gaussian_kernel()
    assert float(normalization_loss(torch.zeros(2, 4, 4), kernel)) == 0.0
    half = float(normalization_loss(torch.full((1, 4, 4), 0.5), kernel))
    assert half < 0.25  # zero padding pulls the border below 1/2
    inner = F.conv2d(torch.full((1, 1, 4, 4), 0.5), kernel[None, None], padding=1)[0, 0, 1:3, 1:3]
    torch.testing.assert_close(inner, torch.full((2, 2), 0.5))  # the kernel sums to 1


def test_sat_is_refused_on_a_model_another_method_has_given_a_head():
    # a TS-CAM model has a method head and no suffix token: SAT would replace its head
    tscam = create_method(MethodConfig("tscam")).adapt_model(create_model("vit_micro", 3))
    assert tscam.method_head is not None and tscam.suffix_tokens == 0
    with pytest.raises(ValueError, match="^SAT's token is added once, to a model without a"):
        create_method(MethodConfig("sat")).adapt_model(tscam)


def test_the_tokens_are_the_official_shape_and_start_and_the_head_trains_at_the_head_rate():
    # Model/SAT.py: loc_token and loc_embed nn.Parameter(torch.zeros(1, 1, embed_dim)), then
    # timm's trunc_normal_(std=.02) (bounds -2, 2); SAT's head parameters are head parameters
    from wsol.methods.sat import SATHead

    torch.manual_seed(0)
    head = SATHead(channels=20_000, num_classes=2, prefix_tokens=1)
    for token in (head.loc_token.detach(), head.loc_embed.detach()):
        assert token.shape == (1, 1, 20_000)
        assert abs(float(token.mean())) < 1e-3 and 0.019 < float(token.std()) < 0.021
        assert float(token.abs().max()) < 0.2  # no draw near the bounds at 0.02 std
    model = create_method(MethodConfig("sat")).adapt_model(create_model("vit_micro", 3))
    names = {n for n, _ in model.named_parameters() if n.startswith("method_head.")}
    assert names and all(model.is_head_parameter(n) for n in names)
    assert not model.is_head_parameter("backbone.cls_token")


def test_the_token_is_appended_in_the_dtype_of_the_tokens():
    from wsol.methods.sat import SATHead

    head = SATHead(channels=8, num_classes=2, prefix_tokens=1)
    tokens = torch.randn(2, 5, 8, dtype=torch.bfloat16)
    out = head.append_token(tokens)
    assert out.shape == (2, 6, 8) and out.dtype == torch.bfloat16


def test_the_loss_applies_the_label_smoothing_it_is_given():
    # the training loss is CE(label_smoothing) + the two constraints, smoothing included
    method, model = fixtures.our_model()
    x, y = fixtures.fixed_input()
    with torch.no_grad():
        logits, plain = method.training_loss(model, MixedBatch(x, y, y, 1.0))
        _, smoothed = method.training_loss(model, MixedBatch(x, y, y, 1.0), label_smoothing=0.1)
    gap = F.cross_entropy(logits, y, label_smoothing=0.1) - F.cross_entropy(logits, y)
    torch.testing.assert_close(smoothed - plain, gap)
    assert abs(float(gap)) > 1e-6
