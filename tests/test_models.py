import pytest
import torch

from wsol.models import create_model, list_models

INPUT = {"inception_v3": 96}


@pytest.mark.parametrize("name", list_models())
def test_every_model_gives_cam_shaped_features_and_gradients(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3)
    size = INPUT.get(name, 64)
    x = torch.randn(2, 3, size, size)
    model.eval()  # dropout (InceptionV3's head) would break the identity below
    logits, features = model.forward_with_features(x)
    assert logits.shape == (2, 3) and features.ndim == 4 and features.shape[0] == 2
    assert torch.isfinite(logits).all()
    cams = model.cams(features, torch.tensor([0, 2]))
    assert cams.shape == (2, *features.shape[2:])
    # CAM of class c, averaged over positions, is (logit_c - bias_c) / C
    expected = (logits - model.classifier.bias).gather(1, torch.tensor([[0], [2]]))[
        :, 0
    ] / features.shape[1]
    torch.testing.assert_close(cams.mean(dim=(1, 2)), expected, rtol=1e-4, atol=1e-5)
    model.train()
    logits, _ = model.forward_with_features(x)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


def test_feature_map_sizes_at_224():
    x = torch.randn(1, 3, 224, 224)
    assert create_model("resnet50", 2).forward_features(x).shape[-2:] == (14, 14)  # layer4 stride 1
    assert create_model("resnet50", 2, large_feature_map=True).forward_features(x).shape[-2:] == (
        28,
        28,
    )
    assert create_model("vgg16", 2).forward_features(x).shape[-2:] == (14, 14)
    assert create_model("vgg16", 2, large_feature_map=True).forward_features(x).shape[-2:] == (
        28,
        28,
    )
    with pytest.raises(ValueError, match="no large_feature_map"):
        create_model("smallcnn", 2, large_feature_map=True)


def test_local_pretrained_weights_load_backbone_and_leave_head_fresh(tmp_path):
    torch.manual_seed(1)
    source = create_model("resnet18", num_classes=7)
    torch.save(source.state_dict(), tmp_path / "ours.pt")
    # a torchvision-layout file (keys without our "backbone." prefix, with an fc head)
    tv = {
        k.removeprefix("backbone."): v
        for k, v in source.state_dict().items()
        if k.startswith("backbone.")
    }
    tv["fc.weight"] = torch.zeros(1000, 512)
    torch.save(tv, tmp_path / "tv.pt")
    for file in ("ours.pt", "tv.pt"):
        torch.manual_seed(2)
        model = create_model("resnet18", num_classes=4, pretrained=tmp_path / file)
        for (name, p), (_, q) in zip(
            model.backbone.named_parameters(), source.backbone.named_parameters()
        ):
            assert torch.equal(p, q), name
        assert model.classifier.weight.shape == (4, 512)
    with pytest.raises(FileNotFoundError):
        create_model("resnet18", 4, pretrained=tmp_path / "absent.pt")
    torch.save({"x": torch.zeros(1)}, tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="no backbone weight"):
        create_model("resnet18", 4, pretrained=tmp_path / "junk.pt")


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ValueError, match="resnet50"):
        create_model("alexnet", 3)
    assert list_models("resnet*") == ["resnet18", "resnet50"]


def test_separate_learning_rates():
    from wsol.config import TrainConfig
    from wsol.train import build_optimizer

    cfg = TrainConfig()
    model = create_model("vgg16", 3)
    opt = build_optimizer(model, cfg)
    assert opt.param_groups[1]["lr"] == pytest.approx(10 * opt.param_groups[0]["lr"])
    head = {id(p) for p in opt.param_groups[1]["params"]}
    assert id(model.classifier.weight) in head and id(model.neck[0].weight) in head


@pytest.mark.parametrize(
    "name,factory",
    [
        ("resnet50", lambda: __import__("torchvision").models.resnet50(weights=None)),
        ("vgg16", lambda: __import__("torchvision").models.vgg16(weights=None)),
        (
            "inception_v3",
            lambda: __import__("torchvision").models.inception_v3(weights=None, init_weights=False),
        ),
    ],
)
def test_torchvision_weights_map_onto_every_backbone_tensor(name, factory, monkeypatch):
    """The real `pretrained: torchvision` path, with torchvision's own (random) state dict standing
    in for the download: every backbone tensor must be filled from it."""
    from wsol.models import backbones

    torch.manual_seed(3)
    reference = factory().state_dict()
    monkeypatch.setattr(backbones, "torchvision_state_dict", lambda weights_name: reference)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing backbone weight would warn
        model = create_model(name, num_classes=3, pretrained="torchvision")
    rename = model.rename_torchvision_key
    own = model.state_dict()
    loaded = {rename(k): v for k, v in reference.items() if rename(k) in own}
    assert {k for k in own if k.startswith("backbone.")} == set(loaded)
    for key, value in loaded.items():
        assert torch.equal(own[key], value), key
