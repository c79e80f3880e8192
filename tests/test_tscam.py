"""TS-CAM against vasgaowei/TS-CAM's own model.

tests/fixtures/methods/tscam.npz holds the official ``TSCAM``'s logits, CAMs and loss on
deterministic weights and a fixed input (scripts/make_tscam_fixtures.py made it from the
official lib/models/deit.py and says how). The parameter counts are the official model's,
counted from the same code: 170,695 for the tiny ViT at 7 classes, 22,357,064 for DeiT-S at 200.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wsol.methods import MethodConfig, MixedBatch, create_method
from wsol.models import create_model

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location(
    "make_tscam_fixtures", ROOT / "scripts" / "make_tscam_fixtures.py"
)
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)
EXPECTED = np.load(ROOT / "tests" / "fixtures" / "methods" / "tscam.npz")


def test_matches_the_official_model():
    method, model = fixtures.our_model()
    assert sum(p.numel() for p in model.parameters()) == 170_695
    x, y = fixtures.fixed_input()
    with torch.no_grad():
        logits, features = model.forward_with_features(x)
        cams = method.cams(model, features, y)
        _, loss = method.training_loss(model, MixedBatch(x, y, y, 1.0))
    torch.testing.assert_close(logits, torch.from_numpy(EXPECTED["logits"]), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cams, torch.from_numpy(EXPECTED["cams"]), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(loss, torch.from_numpy(EXPECTED["loss"]), rtol=1e-5, atol=1e-6)


def test_the_deit_small_model_has_the_official_size():
    model = create_method(MethodConfig("tscam")).adapt_model(create_model("deit_small", 200))
    assert sum(p.numel() for p in model.parameters()) == 22_357_064


def test_the_cam_is_the_semantic_map_times_the_class_tokens_attention():
    from wsol.models.vit import attention_maps

    method, model = fixtures.our_model()
    x, y = fixtures.fixed_input()
    with torch.no_grad():
        features = model.forward_features(x)
        cams = method.cams(model, features, y)
        maps = attention_maps(model, x)  # (blocks, B, heads, T, T), read another way
        semantic = model.method_head.conv(features)[torch.arange(2), y]
    attention = maps.mean(dim=2).sum(dim=0)[:, 0, 1:].reshape(2, 8, 8)
    torch.testing.assert_close(cams, attention * semantic)
    # the logits are the semantic maps' spatial means, not a linear layer on the class token
    torch.testing.assert_close(
        model(x), model.method_head.conv(features).mean(dim=(2, 3)), rtol=1e-5, atol=1e-6
    )


def test_the_cam_needs_the_attention_of_the_same_forward_pass():
    method, model = fixtures.our_model()
    x, y = fixtures.fixed_input()
    with torch.no_grad():
        model.forward_features(x)
        with pytest.raises(RuntimeError, match="no class-token attention"):
            method.cams(model, torch.zeros(2, 64, 8, 8), y)
    model.train()
    with torch.no_grad():  # no attention is kept in training: nothing to slow it down
        features = model.forward_features(x)
    with pytest.raises(RuntimeError, match="no class-token attention"):
        method.cams(model, features, y)


def test_a_cnn_is_refused_with_a_sentence():
    method = create_method(MethodConfig("tscam"))
    with pytest.raises(ValueError, match="no class token.*vision transformer"):
        method.adapt_model(create_model("smallcnn", 3))


def test_the_loss_is_cross_entropy_and_every_parameter_learns():
    method, model = fixtures.our_model()
    model.train()
    x, y = fixtures.fixed_input()
    logits, loss = method.training_loss(model, MixedBatch(x, y, y, 1.0))
    torch.testing.assert_close(loss, F.cross_entropy(logits, y))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def _tscam_lrs(lr: float, epochs: int, steps: list[int], gamma: float = 0.1) -> list[float]:
    """vasgaowei/TS-CAM tools_cam/train_cam.py: for epoch in 1..NUM_EPOCHS,
    adjust_learning_rate_normal (lib/core/engine.py) multiplies every group's lr by LR_FACTOR
    when epoch % step == 0 for any step of LR_STEPS, before training that epoch."""
    out = []
    for epoch in range(1, epochs + 1):
        if any(epoch % s == 0 for s in steps[::-1]):
            lr *= gamma
        out.append(lr)
    return out


@pytest.mark.parametrize(
    "name,lr,epochs,steps,batch",
    [
        # configs/CUB/deit_tscam_small_patch16_224.yaml (LR_STEPS [30], 60 epochs, batch 128)
        # with train_val_cub.sh's --lr 5e-5
        ("cub_deit_small_tscam_paper", 5e-5, 60, [30], 128),
        # configs/ILSVRC/deit_tscam_small_patch16_224.yaml (LR_STEPS [10, 12], 20 epochs,
        # batch 256) with train_val_ilsvrc.sh's --lr 5e-4
        ("imagenet_deit_small_tscam_paper", 5e-4, 20, [10, 12], 256),
    ],
)
def test_the_tscam_recipes_train_as_the_official_code(name, lr, epochs, steps, batch):
    from wsol.config import load_config
    from wsol.train import build_optimizer, lr_factor

    cfg = load_config(ROOT / "configs" / f"{name}.yaml")
    assert (cfg.model.name, cfg.method.method, cfg.epochs, cfg.batch_size) == (
        "deit_small", "tscam", epochs, batch,
    )  # fmt: skip
    # timm 0.3.2 create_optimizer with the argparse defaults of lib/config/default.py:
    # --opt adamw, --weight-decay 0.05, --drop-path 0.1; one rate for every parameter
    assert (cfg.optim.optimizer, cfg.optim.weight_decay, cfg.optim.head_lr_mult) == (
        "adamw", 0.05, 1.0,
    )  # fmt: skip
    assert cfg.model.drop_path_rate == 0.1
    assert cfg.model.pretrained.endswith("deit_small_patch16_224-cd65a155.pth")  # deit.py's file
    ours = [cfg.optim.lr * lr_factor(cfg, e) for e in range(cfg.epochs)]
    assert ours == pytest.approx(_tscam_lrs(lr, epochs, steps))
    model = create_method(MethodConfig("tscam")).adapt_model(create_model("vit_micro", 7))
    rates = [g["lr"] for g in build_optimizer(model, cfg).param_groups]
    assert rates == pytest.approx([lr] * len(rates))
