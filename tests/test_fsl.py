"""The FSL baseline (Choe et al., CVPR 2020): its loss on known inputs, its training targets, and
a run that trains on the val split only and is scored on test like every method."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import cpu_run
from PIL import Image

from wsol.config import load_config
from wsol.data.dataset import IGNORE, LocalizationDataset, localization_target
from wsol.data.records import DatasetSplit, ImageRecord
from wsol.methods import create_method, foreground_loss
from wsol.methods.base import MethodConfig
from wsol.models import create_model


def test_foreground_loss_on_known_inputs():
    # a 2 x 2 logit map at the target's size (no interpolation):
    # BCE(x, t) = softplus(x) - t * x, averaged over the pixels that are not ignored
    logits = torch.tensor([[[[2.0, -1.0], [0.5, 3.0]]]])
    target = torch.tensor([[[1, 0], [IGNORE, 0]]], dtype=torch.uint8)

    def softplus(x: float) -> float:
        return math.log1p(math.exp(x))

    expected = ((softplus(2.0) - 2.0) + softplus(-1.0) + softplus(3.0)) / 3
    assert foreground_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)
    # a constant map upsampled to 4 x 4 keeps its value: half foreground gives the mean of
    # -log(sigmoid(c)) and -log(1 - sigmoid(c))
    c = 0.7
    constant = torch.full((1, 1, 2, 2), c)
    half = torch.zeros(1, 4, 4, dtype=torch.uint8)
    half[:, :2] = 1
    assert foreground_loss(constant, half).item() == pytest.approx(
        (softplus(-c) + softplus(c)) / 2, rel=1e-6
    )
    # nothing to learn from: 0, with a gradient path
    everything_ignored = torch.full((1, 4, 4), IGNORE, dtype=torch.uint8)
    x = constant.clone().requires_grad_(True)
    loss = foreground_loss(x, everything_ignored)
    loss.backward()
    assert loss.item() == 0.0 and x.grad is not None


def test_targets_fill_boxes_inclusively_and_keep_ignore_regions(tmp_path):
    record = ImageRecord("a.jpg", tmp_path / "a.jpg", 0, (8, 6), ((1.0, 2.0, 3.0, 4.0),))
    target = localization_target(record, (8, 6))
    # the reference's boxes are inclusive pixel corners: columns 1..3, rows 2..4
    assert target.shape == (6, 8) and target.sum() == 3 * 3
    assert target[2:5, 1:4].all() and target[2:5, 1:4].sum() == 9
    mask = np.zeros((6, 8), np.uint8)
    mask[0:2, 0:2] = 255
    ignore = np.zeros((6, 8), np.uint8)
    ignore[0:3, 0:3] = 255  # overlaps the object: the object wins
    Image.fromarray(mask).save(tmp_path / "m.png")
    Image.fromarray(ignore).save(tmp_path / "i.png")
    record = ImageRecord(
        "b.jpg", tmp_path / "b.jpg", 0, (8, 6), (), (tmp_path / "m.png",), tmp_path / "i.png"
    )
    target = localization_target(record, (8, 6))
    assert (target[0:2, 0:2] == 1).all()
    assert (target == IGNORE).sum() == 9 - 4
    assert set(np.unique(target)) == {0, 1, IGNORE}
    with pytest.raises(ValueError, match="has no box"):
        localization_target(record, (8, 6), "boxes")


def test_the_image_and_its_target_get_the_same_crop_and_flip(tmp_path):
    # an image whose left half is white: its target marks the same half, so after any random
    # crop and flip the target must still mark exactly the white pixels
    image = np.zeros((40, 40, 3), np.uint8)
    image[:, :20] = 255
    Image.fromarray(image).save(tmp_path / "x.png")
    record = ImageRecord("x.png", tmp_path / "x.png", 0, (40, 40), ((0.0, 0.0, 19.0, 39.0),))
    data = LocalizationDataset(DatasetSplit("t", "val", [record]), 36, 32)
    torch.manual_seed(0)
    for _ in range(8):
        tensor, target, _ = data[0]
        white = tensor.mean(0) > 0
        assert target.shape == (32, 32) and torch.equal(white, target.bool())


def test_fsl_trains_on_val_only_and_is_scored_on_test(synth_root, tmp_path):
    from wsol.evaluate import evaluate_checkpoint
    from wsol.train import train

    cfg = load_config(
        None,
        cpu_run(
            synth_root,
            **{
                "data.format": "cub",
                "data.val_per_class": 2,
                "method.method": "fsl",
                "epochs": 2,
                "optim.lr": 0.05,
            },
        ),
    )
    out = tmp_path / "fsl"
    train(cfg, out, progress=False, echo=False)
    import yaml

    splits = yaml.safe_load((out / "splits.yaml").read_text())
    # 4 classes x 2 held-out images: the val split is what it trained on, and there is no val
    assert splits["train_split"] == "val" and splits["train_images"] == 8
    assert splits["val"].startswith("none")
    assert not (out / "best.pt").exists()
    ckpt = torch.load(out / "last.pt", weights_only=False)
    model = create_method(MethodConfig("fsl")).adapt_model(create_model("smallcnn", 4))
    assert set(model.state_dict()) == set(ckpt["model"])
    result = evaluate_checkpoint(out, device="cpu", workers=0, progress=False, echo=False)
    assert 0.0 <= result["MaxBoxAccV2"] <= 100.0 and 0.0 <= result["PxAP"] <= 100.0


def test_a_training_step_moves_the_foreground_conv_and_not_the_classifier():
    from wsol.train import build_optimizer, train_step

    method = create_method(MethodConfig("fsl"))
    model = method.adapt_model(create_model("smallcnn", 4))
    cfg = load_config(None, ["optim.lr=0.1"])
    opt = build_optimizer(model, cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.randn(2, 3, 32, 32)
    target = torch.zeros(2, 32, 32, dtype=torch.uint8)
    target[:, 8:24, 8:24] = 1
    loss, correct = train_step(model, images, target, opt, method)
    after = model.state_dict()
    assert torch.equal(before["classifier.weight"], after["classifier.weight"])
    assert not torch.equal(before["method_head.score.weight"], after["method_head.score.weight"])
    assert loss.item() > 0 and 0 <= correct.item() <= 2  # pixel accuracy summed over 2 images


def test_fsl_refuses_a_val_split_without_localization(synth_root, tmp_path):
    from wsol.train import train

    cfg = load_config(None, cpu_run(synth_root, **{"data.format": "cub", "method.method": "fsl"}))
    with pytest.raises(ValueError, match="trains on the fully supervised val split"):
        train(cfg, tmp_path / "x", progress=False, echo=False)
