"""Vision transformers through timm (wsol/models/vit.py): patch tokens as the feature map, the
attention readable, weights from a local file only, methods and the Grad-CAM family on them.
Tiny ViTs at 64 px; nothing is downloaded."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from wsol.models import create_model
from wsol.models.vit import attention_maps


def _micro(seed=0, classes=4):
    torch.manual_seed(seed)
    return create_model("vit_micro", classes).eval()


def test_the_feature_map_is_the_patch_tokens_in_raster_order():
    model = _micro()
    x = torch.randn(2, 3, 64, 64)
    tokens = model.backbone.forward_features(x)  # timm's own: (B, 1 + 64, C)
    features = model.forward_features(x)
    assert features.shape == (2, 64, 8, 8)
    # token 1 + (row * 8 + col) is the patch at (row, col): patch (2, 5) is token 1 + 21
    torch.testing.assert_close(features[:, :, 2, 5], tokens[:, 1 + 21])
    torch.testing.assert_close(features.flatten(2).transpose(1, 2), tokens[:, 1:])
    # logits: the classifier on the average of the patch map, not on the class token
    logits = model(x)
    torch.testing.assert_close(logits, model.classifier(tokens[:, 1:].mean(1)))


def test_another_input_size_gets_its_own_patch_grid():
    model = _micro()
    assert model.forward_features(torch.randn(1, 3, 96, 128)).shape == (1, 64, 12, 16)
    with pytest.raises(ValueError, match="multiple of 8"):
        model.forward_features(torch.randn(1, 3, 60, 64))  # not a multiple of the patch size


def test_attention_is_readable_and_is_what_the_model_computes():
    model = _micro()
    x = torch.randn(2, 3, 64, 64)
    maps = attention_maps(model, x)
    assert maps.shape == (3, 2, 4, 65, 65)  # blocks, batch, heads, tokens, tokens
    torch.testing.assert_close(maps.sum(-1), torch.ones(3, 2, 4, 65))
    # the unfused attention equals timm's fused kernel: the model's output does not change
    unfused = model.forward_features(x)
    for block in model.backbone.blocks:
        block.attn.fused_attn = True
    torch.testing.assert_close(model.forward_features(x), unfused, rtol=1e-4, atol=1e-5)
    # the class token's attention to the patches, as a map
    cls_to_patches = maps[-1, :, :, 0, 1:].mean(1).reshape(2, 8, 8)
    assert torch.isfinite(cls_to_patches).all() and (cls_to_patches > 0).all()


def test_weights_load_from_a_local_deit_file_and_its_head_is_left(tmp_path):
    source = _micro(seed=1)
    # a DeiT-layout file: timm's key names, the ImageNet head, held under "model"
    state = dict(source.backbone.state_dict())
    state["head.weight"] = torch.zeros(1000, 64)
    state["head.bias"] = torch.zeros(1000)
    torch.save({"model": state}, tmp_path / "deit.pth")
    model = create_model("vit_micro", 4, pretrained=tmp_path / "deit.pth")
    for key, value in source.backbone.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[key], value)
    assert model.classifier.weight.shape == (4, 64)  # fresh, not the 1000-class head
    assert not torch.equal(model.classifier.weight, source.classifier.weight)
    # timm's safetensors files load the same way
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "deit.safetensors")
    again = create_model("vit_micro", 4, pretrained=tmp_path / "deit.safetensors")
    torch.testing.assert_close(again.backbone.pos_embed, source.backbone.pos_embed)


def test_a_missing_weight_file_says_what_to_download(tmp_path):
    # the address is timm's own record of DeiT-S's weights (its pretrained_cfg)
    with pytest.raises(ValueError, match=r"does not exist.*deit_small_patch16_224.*\.pth"):
        create_model("deit_small", 4, pretrained=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="no torchvision weights: download deit_small"):
        create_model("deit_small", 4, pretrained="torchvision")


def test_the_gradcam_family_reads_the_token_map():
    from wsol.cam import gradcam_family

    model = _micro()
    x = torch.randn(2, 3, 64, 64)
    for method in ("gradcam", "layercam"):
        cams = gradcam_family(model, x, torch.tensor([0, 3]), method)
        assert cams.shape == (2, 64, 64) and torch.isfinite(cams).all()
        assert float(cams.std()) > 0  # a map, not a constant


@pytest.mark.parametrize("name", ["base", "cutmix", "has", "acol", "tscam", "sat"])
def test_methods_train_and_evaluate_on_a_tiny_vit(name, synth_root, tmp_path):
    from conftest import cpu_run

    from wsol.config import load_config
    from wsol.evaluate import evaluate_checkpoint
    from wsol.train import train

    overrides = cpu_run(synth_root, **{
        "model.name": "vit_micro", "data.resize_size": 72, "data.crop_size": 64,
        "method.method": name, "optim.lr": 0.001, "tensorboard": "false",
    })  # fmt: skip
    row = train(load_config(None, overrides), tmp_path / "run", progress=False, echo=False)
    assert np.isfinite(row["train_loss"])
    metrics = evaluate_checkpoint(tmp_path / "run", tmp_path / "eval", progress=False, echo=False)
    assert 0 <= metrics["MaxBoxAccV2"] <= 100 and 0 <= metrics["PxAP"] <= 100
    context = json.loads((tmp_path / "eval" / "metrics.json").read_text())["context"]
    assert context["method"] == name and context["backbone"] == "vit_micro"


@pytest.mark.parametrize("name,words", [("adl", "ADL"), ("spg", "SPG")])
def test_cnn_only_methods_refuse_a_vit_with_a_sentence(name, words):
    from wsol.methods import MethodConfig, create_method

    method = create_method(MethodConfig(name))
    with pytest.raises(ValueError, match=f"^{words}.*vision transformer") as caught:
        method.adapt_model(_micro())
    assert str(caught.value).endswith(f"({words} on tokens is not defined by its paper)")


def test_adamw_leaves_norms_biases_and_the_embeddings_undecayed():
    # timm 0.3.x create_optimizer (TS-CAM trains with it): no decay on 1-D parameters, names
    # ending in .bias and the model's no_weight_decay() (pos_embed, cls_token)
    from wsol.config import load_config
    from wsol.train import build_optimizer

    model = _micro()
    cfg = load_config(None, ["optim.optimizer=adamw", "optim.lr=5e-5", "optim.weight_decay=0.05",
                             "optim.head_lr_mult=10"])  # fmt: skip
    opt = build_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.AdamW)
    names = {id(p): n for n, p in model.named_parameters()}
    undecayed = {
        names[id(p)] for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]
    }
    decayed = {
        names[id(p)] for g in opt.param_groups if g["weight_decay"] == 0.05 for p in g["params"]
    }
    assert {"backbone.pos_embed", "backbone.cls_token", "backbone.norm.weight"} <= undecayed
    assert "backbone.blocks.0.attn.qkv.bias" in undecayed and "classifier.bias" in undecayed
    assert "backbone.blocks.0.attn.qkv.weight" in decayed and "classifier.weight" in decayed
    assert undecayed | decayed == set(names.values()) and not undecayed & decayed
    rates = {names[id(p)]: g["lr"] for g in opt.param_groups for p in g["params"]}
    assert rates["classifier.weight"] == pytest.approx(5e-4)  # the head rate still applies
    assert rates["backbone.pos_embed"] == pytest.approx(5e-5)
    assert opt.defaults["betas"] == (0.9, 0.999) and opt.defaults["eps"] == 1e-8


def test_stochastic_depth_reaches_the_blocks_and_is_refused_elsewhere():
    model = create_model("vit_micro", 3, drop_path_rate=0.1)
    rates = [float(getattr(b.drop_path1, "drop_prob", 0.0)) for b in model.backbone.blocks]
    assert rates == pytest.approx([0.0, 0.05, 0.1])  # timm's linear rule over the depth
    with pytest.raises(ValueError, match="no drop_path_rate option"):
        create_model("smallcnn", 3, drop_path_rate=0.1)
