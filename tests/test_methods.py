"""Methods are registered objects; training and evaluation reach one only through its hooks."""

from __future__ import annotations

import pytest
import torch

from wsol.config import load_config
from wsol.methods import Method, MethodConfig, create_method, list_methods, register_method
from wsol.methods.base import _REGISTRY

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_the_registry_lists_every_method_and_builds_it_from_its_config():
    assert list_methods() == ["base", "cutmix", "cutout", "mixup"]
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
