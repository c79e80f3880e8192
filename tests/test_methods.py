"""Methods are registered objects; training and evaluation reach one only through its hooks."""

from __future__ import annotations

import pytest
import torch

from wsol.config import load_config
from wsol.methods import Method, MethodConfig, create_method, list_methods, register_method
from wsol.methods.base import _REGISTRY

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_the_registry_lists_every_method_and_builds_it_from_its_config():
    assert list_methods() == ["base", "cutmix", "cutout", "has", "mixup"]
    for name in list_methods():
        method = create_method(MethodConfig(name))
        assert isinstance(method, Method) and method.name == name
    with pytest.raises(ValueError, match="registered twice"):

        @register_method
        class Again(Method):
            name = "cutmix"


def test_training_and_evaluation_go_through_the_hooks(synth_root, tmp_path):
    from wsol.evaluate import evaluate_checkpoint
    from wsol.train import train

    calls: list[str] = []

    @register_method
    class Probe(Method):
        name = "probe_for_tests"

        def adapt_model(self, model):
            calls.append("model")
            return model

        def prepare_batch(self, images, targets, generator):
            calls.append("batch")
            return super().prepare_batch(torch.flip(images, dims=[3]), targets, generator)

        def loss(self, logits, batch, label_smoothing=0.0):
            calls.append("loss")
            return super().loss(logits, batch, label_smoothing)

        def cams(self, model, features, classes):
            calls.append("cams")
            return -super().cams(model, features, classes)

    try:
        overrides = [f"data.root={synth_root}", "data.val_per_class=2", "data.workers=0",
                     "data.resize_size=36", "data.crop_size=32", "model.name=smallcnn",
                     "model.pretrained=null", "epochs=1", "batch_size=8", "amp=none",
                     "device=cpu", "cam_curve_interval=0.1", "method.method=probe_for_tests"]  # fmt: skip
        train(load_config(None, overrides), tmp_path / "run", progress=False)
        assert calls.count("model") == 1 and "batch" in calls and "loss" in calls
        assert calls.count("batch") == calls.count("loss")
        assert "cams" in calls  # the val pass reads CAMs through the hook
        calls.clear()
        evaluate_checkpoint(tmp_path / "run", tmp_path / "e", progress=False, echo=False,
                            workers=0)  # fmt: skip
        assert calls[0] == "model" and "cams" in calls  # rebuilt and read as it trained
    finally:
        _REGISTRY.pop("probe_for_tests", None)


@pytest.mark.parametrize("h,w,g", [(16, 16, 4), (10, 13, 4), (9, 9, 3), (8, 8, 0)])
def test_has_hides_exactly_the_drawn_cells(h, w, g):
    # wsolevaluation wsol/method/has.py: cells of grid_size pixels, each hidden (set to 0) when
    # random() <= drop_rate; grid_size 0 hides nothing; config.py defaults 4 and 0.5
    from wsol.methods import hide_cells

    assert (MethodConfig().has_grid_size, MethodConfig().has_drop_rate) == (4, 0.5)
    images = torch.rand(6, 3, h, w) + 0.5  # no zero before
    method = create_method(MethodConfig("has", has_grid_size=g, has_drop_rate=0.5))
    batch = method.prepare_batch(images, torch.arange(6), torch.Generator().manual_seed(3))
    assert batch.lam == 1.0 and torch.equal(batch.targets_a, batch.targets_b)
    if g == 0:
        assert torch.equal(batch.images, images)
        return
    draws = torch.rand(6, -(-h // g), -(-w // g), generator=torch.Generator().manual_seed(3))
    for k in range(6):
        for cy in range(draws.shape[1]):
            for cx in range(draws.shape[2]):
                cell = batch.images[k, :, cy * g : (cy + 1) * g, cx * g : (cx + 1) * g]
                original = images[k, :, cy * g : (cy + 1) * g, cx * g : (cx + 1) * g]
                if draws[k, cy, cx] <= 0.5:
                    assert (cell == 0).all(), (k, cy, cx)
                else:
                    assert torch.equal(cell, original), (k, cy, cx)
    _, hidden = hide_cells(images, g, 1.0)
    assert hidden.all()  # drop_rate 1 hides every cell, 0 none
    assert not hide_cells(images, g, 0.0)[1].any() or (draws == 0).any()


@pytest.mark.parametrize("name", ["base", "cutmix", "mixup", "cutout", "has"])
@pytest.mark.parametrize("model_name", ["smallcnn", "resnet18"])
def test_every_method_trains_every_small_model(name, model_name):
    from wsol.models import create_model
    from wsol.train import train_step

    torch.manual_seed(0)
    model = create_model(model_name, num_classes=3)
    method = create_method(MethodConfig(name, cutout_size=8, has_grid_size=8))
    model = method.adapt_model(model)
    images, targets = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss, _ = train_step(model, images, targets, opt, method, torch.Generator().manual_seed(1))
    assert torch.isfinite(loss)
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    model.eval()
    logits, features = model.forward_with_features(images)
    cams = method.cams(model, features, targets)
    assert cams.shape == (4, *features.shape[2:])
