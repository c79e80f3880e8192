"""The models where the mutation run of wsol/models/ found them loose (docs/testing.md): the
small CNN's architecture, VGG's ReLU after its new conv, InceptionV3's large feature map, the
weight files' key renaming, and the ViT's patch-size check and its attention record."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wsol.models import create_model


def test_the_small_cnn_is_six_3x3_convs_with_batch_norm_and_two_stride_2_stages():
    # ours (no reference): conv 3 x 3, padding 1, no bias (a BatchNorm follows), ReLU; strides
    # 1, 2, 1, 2, 1, 1 and widths 32, 32, 64, 64, 128, 128: a 32 px input gives an 8 x 8 map
    model = create_model("smallcnn", 3)
    convs = [m for m in model.backbone.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size, c.padding, c.bias) for c in convs] == [((3, 3), (1, 1), None)] * 6
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 1]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128]
    for stage in model.backbone:
        assert [type(m) for m in stage] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert model.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 128, 8, 8)


def test_vgg_s_new_conv_is_followed_by_a_relu():
    # wsolevaluation vgg.py VggCam: conv6 (512 -> 1024, 3 x 3, padding 1) + ReLU before the GAP
    model = create_model("vgg16", 3).eval()
    conv, relu = model.neck
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.padding) == (
        512, 1024, (3, 3), (1, 1),
    )  # fmt: skip
    assert isinstance(relu, nn.ReLU)
    with torch.no_grad():
        assert float(model.forward_features(torch.randn(1, 3, 64, 64)).min()) >= 0


def test_inception_s_large_feature_map_doubles_the_map():
    # wsolevaluation inception.py: large_feature_map leaves Mixed_6a's stride at 1
    x = torch.randn(1, 3, 160, 160)
    with torch.no_grad():
        small = create_model("inception_v3", 3).eval().forward_features(x)
        large = create_model("inception_v3", 3, large_feature_map=True).eval().forward_features(x)
    assert large.shape[-1] > small.shape[-1]


@pytest.mark.parametrize(
    "name,kept,dropped",
    [
        ("resnet18", {"layer1.0.conv1.weight": "backbone.layer1.0.conv1.weight"}, ["fc.weight"]),
        ("vgg16", {"features.0.weight": "backbone.0.weight"}, ["classifier.0.weight"]),
        ("inception_v3", {"Conv2d_1a_3x3.conv.weight": "backbone.Conv2d_1a_3x3.conv.weight"},
         ["fc.weight", "AuxLogits.fc.weight"]),
        ("vit_micro", {"blocks.0.attn.qkv.weight": "backbone.blocks.0.attn.qkv.weight"},
         ["head.weight", "head_dist.bias"]),
    ],
)  # fmt: skip
def test_weight_files_keep_the_backbone_and_drop_the_imagenet_classifier(name, kept, dropped):
    rename = create_model(name, 3).rename_torchvision_key
    assert {k: rename(k) for k in kept} == kept
    assert [rename(k) for k in dropped] == [None] * len(dropped)


def test_the_base_rename_prefixes_backbone_and_a_file_of_no_match_is_refused():
    from wsol.models.wsol_model import WSOLModel, load_backbone_weights

    assert WSOLModel.rename_torchvision_key("conv.weight") == "backbone.conv.weight"
    model = create_model("smallcnn", 3)
    with pytest.raises(
        ValueError, match="^no backbone weight in the state dict matches this model$"
    ):
        load_backbone_weights(model, {"x.weight": torch.zeros(1)}, lambda k: k)


@pytest.mark.parametrize("size", [(64, 60), (60, 64)])
def test_the_vit_names_both_sides_of_an_input_that_is_not_whole_patches(size):
    model = create_model("vit_micro", 3)
    h, w = size
    with pytest.raises(ValueError, match=f"an input of {h} x {w} px is not a whole number"):
        model.forward_features(torch.randn(1, 3, h, w))


def test_the_class_attention_is_refused_before_any_forward_pass():
    model = create_model("vit_micro", 3)
    with pytest.raises(RuntimeError, match="^no class-token attention recorded"):
        model.class_token_attention(torch.zeros(1, 64, 8, 8))


def test_a_vit_s_download_hint_names_both_places_of_its_weights():
    hint = create_model("deit_small", 3).download_hint()
    assert hint.startswith("download deit_small_patch16_224's ImageNet weights (")
    assert " or the Hugging Face hub's " in hint and "timm/deit_small_patch16_224" in hint
    # the two places, joined by exactly these words: the file's URL, then the hub's name
    url = hint.removeprefix("download deit_small_patch16_224's ImageNet weights (").split(" ")[0]
    assert url.startswith("https://") and hint.endswith(
        f"({url} or the Hugging Face hub's timm/deit_small_patch16_224.fb_in1k)"
    )


def test_cams_are_read_in_the_dtype_of_the_features_they_are_given():
    # features computed under autocast (bf16) and read outside it: the classifier's float32
    # weights are cast to the features' dtype, not left to make einsum refuse the mix
    model = create_model("smallcnn", 3).eval()
    features = torch.rand(2, model.classifier.in_features, 4, 4)
    classes = torch.tensor([0, 2])
    full = model.cams(features, classes)
    half = model.cams(features.to(torch.bfloat16), classes)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), full, rtol=2e-2, atol=2e-2)


def test_the_default_spg_sites_are_the_third_and_second_last_backbone_modules():
    # WSOLModel.prepare_spg's rule (the small CNN's six stages: B1 after stage 3, B2 after 4)
    model = create_model("smallcnn", 3)
    layout = model.prepare_spg()
    assert layout.b1 == (model.backbone[3], "output") and layout.b2 == (model.backbone[4], "output")
    assert (layout.b1_channels, layout.b2_channels) == (64, 128)
    # counted from the end, for a backbone of any length (six stages make 3 and -3 the same)
    stages = list(model.backbone.children())
    model.backbone = nn.Sequential(nn.Identity(), *stages)
    layout = model.prepare_spg()
    assert layout.b1 == (stages[3], "output") and layout.b2 == (stages[4], "output")


def test_safetensors_weight_files_are_read_by_safetensors(tmp_path, monkeypatch):
    # read_state_dict: a .safetensors file goes to safetensors' own reader (torch.load reads
    # them too since torch 2.x releases, but not the torch 2.4 that pyproject.toml admits)
    import safetensors.torch

    from wsol.models.wsol_model import read_state_dict

    state = {"w": torch.arange(4.0)}
    safetensors.torch.save_file(state, tmp_path / "weights.safetensors")
    calls = []
    real = safetensors.torch.load_file
    monkeypatch.setattr(safetensors.torch, "load_file", lambda f: calls.append(f) or real(f))
    torch.testing.assert_close(read_state_dict(tmp_path / "weights.safetensors")["w"], state["w"])
    assert calls == [str(tmp_path / "weights.safetensors")]


def test_vgg_s_acol_neck_trains_at_the_head_rate():
    # wsolevaluation vgg.py VggAcol: conv6 is new, in the head's parameter group
    model = create_model("vgg16", 3)
    layout = model.prepare_acol()
    assert layout.head_prefixes == ("neck.", "method_head.")


def test_a_cnn_asked_for_its_class_token_names_itself():
    with pytest.raises(ValueError, match="^SmallCNN has no class token"):
        create_model("smallcnn", 3).enable_class_attention()


@pytest.mark.parametrize("pretrained", [None, "", "none", False])
def test_every_spelling_of_no_weights_builds_a_random_model(pretrained):
    # create_model's "no weights" values: a YAML null, an empty override (model.pretrained=),
    # the word none, and False; none of them is read as a file
    model = create_model("smallcnn", 3, pretrained=pretrained)
    assert model.classifier.out_features == 3


def test_options_a_model_lacks_are_named_together():
    with pytest.raises(ValueError) as caught:
        create_model("smallcnn", 3, large_feature_map=True, drop_path_rate=0.1)
    assert str(caught.value) == "model smallcnn has no large_feature_map or drop_path_rate option"


def test_pretrained_torchvision_asks_for_the_backbones_own_weights(monkeypatch):
    # create_model asks torchvision for the weights the backbone's registration names (not
    # some other file); torchvision's own random state dict stands in for the download
    import warnings

    import torchvision

    from wsol.models import backbones

    asked = []

    def fake(weights_name):
        asked.append(weights_name)
        return torchvision.models.resnet18(weights=None).state_dict()

    monkeypatch.setattr(backbones, "torchvision_state_dict", fake)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every backbone weight is found
        create_model("resnet18", 3, pretrained="torchvision")
    assert asked == ["ResNet18_Weights.IMAGENET1K_V1"]


def test_a_model_without_torchvision_weights_says_so_in_one_sentence():
    with pytest.raises(ValueError) as caught:
        create_model("smallcnn", 3, pretrained="torchvision")
    assert str(caught.value) == "model smallcnn has no torchvision weights"


@pytest.mark.parametrize("name", ["resnet18", "smallcnn", "vit_micro"])
def test_the_classifier_starts_as_the_references_n_0_0_01(name):
    # wsolevaluation wsol/util.py initialize_weights: nn.Linear weight normal_(0, 0.01), bias 0
    torch.manual_seed(0)
    classifier = create_model(name, 200).classifier
    weight = classifier.weight.detach().double()
    assert weight.numel() >= 10_000  # enough draws for a std within a few percent
    assert abs(weight.mean().item()) < 1e-3
    assert 0.0095 < weight.std().item() < 0.0105
    assert torch.equal(classifier.bias, torch.zeros_like(classifier.bias))


def _saved_on_a_gpu(path, obj) -> None:
    """``obj`` written as torch.save writes it on a GPU: its storages' location tag rewritten
    from cpu to cuda:0 in the archive's pickle (protocol 2 writes it as BINUNICODE), so that
    reading it without a map_location fails on a machine without CUDA, as a GPU run's file does."""
    import zipfile

    torch.save(obj, path.with_suffix(".cpu"))
    with zipfile.ZipFile(path.with_suffix(".cpu")) as zin, zipfile.ZipFile(path, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name.endswith("data.pkl"):
                moved = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
                assert moved != data
                data = moved
            zout.writestr(name, data)


def test_weights_and_checkpoints_saved_on_a_gpu_are_read_onto_the_cpu(tmp_path):
    # a model trained on a GPU is evaluated or fine-tuned on a laptop: every file is read with
    # map_location="cpu", never onto the device it was saved from
    from wsol.models.wsol_model import read_state_dict
    from wsol.runtime import load_checkpoint

    state = {"backbone.w": torch.arange(4.0)}
    _saved_on_a_gpu(tmp_path / "weights.pth", state)
    if not torch.cuda.is_available():  # the file really is a GPU one
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "weights.pth", weights_only=True)
    read = read_state_dict(tmp_path / "weights.pth")
    assert read["backbone.w"].device.type == "cpu" and torch.equal(read["backbone.w"], state["backbone.w"])
    _saved_on_a_gpu(tmp_path / "last.pt", {"model": state, "config": {}})
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["model"]["backbone.w"].device.type == "cpu"


@pytest.mark.parametrize("name", ["inception_v3", "resnet18", "vgg16"])
def test_a_whole_model_pickles(name):
    # torch.save(model) and multiprocessing pickle the model's classes by name; InceptionV3's
    # stride-1 block is made on first use (torchvision is imported lazily) and must still be
    # found by its module-level name
    import pickle

    model = create_model(name, 3)
    again = pickle.loads(pickle.dumps(model))
    assert [type(m) for m in again.modules()] == [type(m) for m in model.modules()]
    for (key, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), key
