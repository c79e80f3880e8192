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


def test_adl_sits_where_the_reference_puts_it():
    from torch import nn

    # wsolevaluation resnet.py _ADL_POSITION [[], [], [], [0], [0, 2]]: after block 0 of layer3
    # and blocks 0 and 2 of layer4
    r = create_model("resnet50", 3)
    b = r.backbone
    assert r.adl_sites() == [b.layer3[0], b.layer4[0], b.layer4[2]]
    # vgg.py configs_dict['adl']: 'A' after pool3 and after the ReLUs of conv4_3 and conv5_3,
    # torchvision's features[16] (a pool), [22] and [29] (ReLUs)
    v = create_model("vgg16", 3)
    sites = v.adl_sites()
    assert sites == [v.backbone[16], v.backbone[22], v.backbone[29]]
    assert [type(m) for m in sites] == [nn.MaxPool2d, nn.ReLU, nn.ReLU]
    assert isinstance(v.backbone[21], nn.Conv2d) and isinstance(v.backbone[28], nn.Conv2d)
    # inception.py InceptionAdl: after Mixed_5d, Mixed_6e and SPG_A3_2b (our neck[5]: its
    # second 3 x 3 conv's ReLU)
    i = create_model("inception_v3", 3)
    assert i.adl_sites()[:2] == [i.backbone.Mixed_5d, i.backbone.Mixed_6e]
    assert i.adl_sites()[2] is i.neck[5] and isinstance(i.neck[4], nn.BatchNorm2d) is False
    # the default (the small CNN): after the backbone's last block
    s = create_model("smallcnn", 3)
    assert s.adl_sites() == [s.backbone[-1]]


@pytest.mark.parametrize("method", ["acol", "spg"])
@pytest.mark.parametrize("name", ["smallcnn", "resnet18", "vgg16", "inception_v3"])
def test_method_heads_train_at_the_head_rate(name, method):
    from wsol.config import load_config
    from wsol.methods import MethodConfig, create_method
    from wsol.train import build_optimizer

    model = create_method(MethodConfig(method)).adapt_model(create_model(name, 3))
    opt = build_optimizer(model, load_config(None, ["optim.lr=0.001", "optim.head_lr_mult=10"]))
    rates = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    heads = [(n, p) for n, p in model.named_parameters() if n.startswith("method_head.")]
    # wsolevaluation main.py groups by name: ResNet's 'layer4.' and 'fc.' at the head rate, so
    # its ACoL / SPG branches (named otherwise) train at lr; every other backbone's new layers
    # at the head rate
    expected = 0.001 if name.startswith("resnet") else 0.01
    assert heads and all(rates[id(p)] == pytest.approx(expected) for _, p in heads)
    if name.startswith("resnet"):
        layer4 = [p for n, p in model.named_parameters() if n.startswith("backbone.layer4.")]
        assert all(rates[id(p)] == pytest.approx(0.01) for p in layer4)
    if name == "vgg16":  # wsolevaluation: everything but features. at the head rate (conv6)
        necks = [p for n, p in model.named_parameters() if n.startswith("neck.")]
        assert all(rates[id(p)] == pytest.approx(0.01) for p in necks)


def test_vgg_acol_and_spg_keep_the_large_feature_map():
    from wsol.methods import MethodConfig, create_method

    x = torch.randn(1, 3, 224, 224)
    for method in ("acol", "spg"):
        for large, side in ((False, 14), (True, 28)):
            m = create_method(MethodConfig(method))
            model = m.adapt_model(create_model("vgg16", 2, large_feature_map=large)).eval()
            with torch.no_grad():
                assert model.forward_features(x).shape[-1] == side, (method, large)


def test_torchvision_weight_names_exist():
    from torchvision import models as tvm

    for name in ("resnet18", "resnet50", "vgg16", "inception_v3"):
        enum, _, member = create_model(name, 2).torchvision_weights.partition(".")
        assert getattr(tvm, enum)[member].url.startswith("https://")


def test_weight_files_of_every_layout_load(tmp_path):
    torch.manual_seed(3)
    source = create_model("smallcnn", 4)
    state = source.state_dict()
    for i, data in enumerate([
        {"model": state},
        {"state_dict": state},
        {f"module.{k}": v for k, v in state.items()},  # a DDP file
        {"notes": "x", **state},  # a key no model has, first
    ]):  # fmt: skip
        torch.save(data, tmp_path / f"w{i}.pt")
        model = create_model("smallcnn", 4, pretrained=tmp_path / f"w{i}.pt")
        for key in source.backbone.state_dict():
            torch.testing.assert_close(
                model.backbone.state_dict()[key], source.backbone.state_dict()[key]
            )
    torch.save({"nothing": torch.zeros(1)}, tmp_path / "none.pt")
    with pytest.raises(ValueError, match="no backbone weight in the state dict matches"):
        create_model("smallcnn", 4, pretrained=tmp_path / "none.pt")
    with pytest.raises(FileNotFoundError, match="pretrained weights .* does not exist"):
        create_model("smallcnn", 4, pretrained=tmp_path / "missing.pt")


def test_a_model_name_registers_once():
    from wsol.models import model_builder, register_model

    assert model_builder("smallcnn")(3).classifier.out_features == 3
    with pytest.raises(ValueError, match="model smallcnn is registered twice"):

        @register_model
        def smallcnn(num_classes):  # noqa: F811
            return None
