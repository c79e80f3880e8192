"""The training protocol of clovaai/wsolevaluation (main.py, config.py, data_loaders.py,
wsol/resnet.py, vgg.py, inception.py, wsol/util.py), pinned: every expected value below says
where in the reference it comes from."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import cpu_run
from PIL import Image

from wsol.config import load_config
from wsol.data import convert_cub, read_cub
from wsol.data.splits import NoValSplit, load_split
from wsol.models import create_model
from wsol.train import build_optimizer, build_scheduler, train

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CONFIGS = Path(__file__).parent.parent / "configs"
REFERENCE_RECIPES = sorted(
    p
    for p in CONFIGS.glob("*.yaml")
    if p.name.startswith(("cub_", "imagenet_", "openimages_"))
    and "_tscam" not in p.stem  # TS-CAM's own recipes: tests/test_tscam.py
    and "_sat" not in p.stem  # SAT's: tests/test_sat.py
)
WSOLEVAL_RECIPES = [p for p in REFERENCE_RECIPES if not p.stem.endswith("_paper")]


# ------------------------------------------------------------------------ learning-rate groups
@pytest.mark.parametrize(
    "name,head,base",
    [
        # main.py _FEATURE_PARAM_LAYER_PATTERNS: resnet -> 'layer4.' and 'fc.' at lr x ratio.
        # ResNet-50 layer4 (three Bottlenecks 1024/2048 -> 2048 with downsample) 14,964,736
        # + fc 2048 x 200 + 200 = 409,800; the rest (conv1 ... layer3) 8,543,296.
        ("resnet50", 14_964_736 + 409_800, 8_543_296),
        # vgg -> 'features.' at lr, everything else (conv6 3x3 512->1024: 4,719,616; fc
        # 1024 x 200 + 200: 205,000) at lr x ratio. VGG16 conv layers: 14,714,688.
        ("vgg16", 4_719_616 + 205_000, 14_714_688),
        # inception -> 'Mixed', 'Conv2d_1..4' at lr; SPG_A3_1b (768->1024 3x3: 7,078,912),
        # SPG_A3_2b (1024->1024 3x3: 9,438,208) and SPG_A4 (1024 -> 200: 205,000) at lr x ratio.
        ("inception_v3", 7_078_912 + 9_438_208 + 205_000, 8_965_856),
    ],
)
def test_learning_rate_groups_are_the_references(name, head, base):
    model = create_model(name, num_classes=200)
    cfg = load_config(None, ["optim.lr=0.001", "optim.head_lr_mult=10"])
    opt = build_optimizer(model, cfg)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.001, 0.01])
    assert sum(p.numel() for p in opt.param_groups[0]["params"]) == base
    assert sum(p.numel() for p in opt.param_groups[1]["params"]) == head
    # the same split by the reference's own name patterns, mapped onto our names
    patterns = {
        "resnet50": lambda n: "layer4." in n or n.startswith("classifier."),
        "vgg16": lambda n: not n.startswith("backbone."),
        "inception_v3": lambda n: not n.startswith("backbone."),
    }[name]
    head_ids = {id(p) for p in opt.param_groups[1]["params"]}
    for param_name, p in model.named_parameters():
        assert (id(p) in head_ids) == patterns(param_name), param_name
    assert opt.defaults["nesterov"] is True  # main.py: torch.optim.SGD(..., nesterov=True)


def _reference_lrs(lr: float, epochs: int, step: int, gamma: float) -> list[float]:
    """main.py's loop: adjust_learning_rate(epoch + 1) multiplies every group's lr by 0.1 when
    (epoch + 1) % lr_decay_frequency == 0, before training that epoch."""
    out = []
    for epoch in range(epochs):
        if epoch + 1 != 0 and (epoch + 1) % step == 0:
            lr *= gamma
        out.append(lr)
    return out


@pytest.mark.parametrize("path", REFERENCE_RECIPES, ids=lambda p: p.stem)
def test_every_recipe_trains_each_epoch_at_the_references_lr(path):
    cfg = load_config(path)
    assert cfg.optim.scheduler == "step"
    opt = build_optimizer(create_model("smallcnn", 3), cfg)
    sched = build_scheduler(opt, cfg)
    expected = _reference_lrs(cfg.optim.lr, cfg.epochs, cfg.optim.lr_step, cfg.optim.lr_gamma)
    for epoch in range(cfg.epochs):
        base, head = (g["lr"] for g in opt.param_groups)
        assert base == pytest.approx(expected[epoch], rel=1e-9), epoch
        assert head == pytest.approx(expected[epoch] * cfg.optim.head_lr_mult, rel=1e-9), epoch
        opt.step()
        sched.step()
    lr = cfg.optim.lr
    if path.stem.startswith("cub_") and not path.stem.endswith("_paper"):
        # CUB: lr_decay_frequency 15 -> the 15th, 30th, 45th epochs (0-based 14, 29, 44) decay
        assert expected[13] == pytest.approx(lr) and expected[14] == pytest.approx(lr * 0.1)
        assert expected[29] == pytest.approx(lr * 0.01) and expected[44] == pytest.approx(lr * 1e-3)
    if path.stem.startswith("imagenet_"):
        # ILSVRC: lr_decay_frequency 3 -> the 3rd, 6th, 9th epochs (0-based 2, 5, 8)
        assert expected[1] == pytest.approx(lr) and expected[2] == pytest.approx(lr * 0.1)
        assert expected[8] == pytest.approx(lr * 1e-3)


@pytest.mark.parametrize("path", WSOLEVAL_RECIPES, ids=lambda p: p.stem)
def test_recipes_follow_the_reference_settings(path):
    cfg = load_config(path)
    assert cfg.optim.nesterov and cfg.optim.momentum == 0.9 and cfg.optim.head_lr_mult == 10
    assert cfg.model.pretrained == "torchvision"
    assert (cfg.data.resize_size, cfg.data.crop_size) == (256, 224)  # config.py defaults
    assert cfg.amp == "none"  # the reference trains in float32
    assert cfg.batch_size == 32  # every copy of the tuned runs (README example: 32)
    if path.stem.startswith("cub_"):
        # CUB: 50 epochs, decay every 15; train on all training images, val = metadata/CUB/val
        assert (cfg.epochs, cfg.optim.lr_step) == (50, 15)
        assert cfg.data.format == "wsol" and cfg.data.metadata
        assert cfg.model.keep_pretrained_classifier is False
    elif path.stem.startswith("openimages_"):
        # README's OpenImages command: 10 epochs, lr_decay_frequency 3,
        # num_val_sample_per_class 5; PxAP is OpenImages' metric (masks, no boxes)
        assert (cfg.epochs, cfg.optim.lr_step, cfg.data.val_per_class) == (10, 3, 5)
        assert cfg.data.format == "wsol" and cfg.data.masks and cfg.select_metric == "PxAP"
        assert cfg.model.keep_pretrained_classifier is False
    else:
        # ILSVRC: 10 epochs, decay every 3; resnet.py keeps the fc for ILSVRC ('cam' type);
        # vgg.py removes 'classifier.' and inception.py 'fc.' always
        assert (cfg.epochs, cfg.optim.lr_step) == (10, 3)
        # resnet.py removes the fc for acol and spg on every data set (and FSL does not classify)
        keeps = cfg.model.name == "resnet50" and cfg.method.method not in ("acol", "spg", "fsl")
        assert cfg.model.keep_pretrained_classifier is keeps
        assert cfg.data.metadata  # ImageNetV2 as val, as the reference


def test_every_reference_backbone_has_both_data_sets_and_methods():
    names = {p.stem for p in WSOLEVAL_RECIPES}
    for data in ("cub", "imagenet", "openimages"):
        for arch in ("vgg16", "inception_v3", "resnet50"):
            for method in ("base", "cutmix", "has", "acol", "spg", "adl", "fsl"):
                assert f"{data}_{arch}_{method}" in names
    for arch in ("resnet50", "vgg16"):
        for method in ("base", "cutmix"):
            cfg = load_config(CONFIGS / f"cub_{arch}_{method}_paper.yaml")
            # CutMix paper, Appendix B: 600 epochs, lr 0.001 / fc 0.01, x0.1 every 150, batch 32
            assert (cfg.epochs, cfg.optim.lr, cfg.optim.head_lr_mult) == (600, 0.001, 10.0)
            assert (cfg.optim.lr_step, cfg.batch_size) == (150, 32)
            if arch == "resnet50":
                # Appendix B: 0.01 for the last fc layer, 0.001 for the rest (layer4 included)
                assert cfg.optim.head_params == "classifier"
                opt = build_optimizer(create_model(arch, num_classes=200), cfg)
                assert sum(p.numel() for p in opt.param_groups[1]["params"]) == 2048 * 200 + 200
                assert opt.param_groups[1]["lr"] == pytest.approx(0.01)


# ------------------------------------------------------------------------ models
@pytest.mark.parametrize(
    "name,params",
    [
        # torchvision ResNet-50 without fc 23,508,032 + fc 2048 x 200 + 200
        ("resnet50", 23_508_032 + 409_800),
        # VGG16 conv layers 14,714,688 + conv6 4,719,616 + fc 205,000
        ("vgg16", 14_714_688 + 4_719_616 + 205_000),
        # the reference's InceptionCam at 200 classes (issue #9: 25,687,976)
        ("inception_v3", 25_687_976),
    ],
)
def test_parameter_counts_and_cam_sizes_are_the_references(name, params):
    model = create_model(name, num_classes=200).eval()
    assert sum(p.numel() for p in model.parameters()) == params
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        # 14 x 14 CAMs at 224 px, 28 x 28 with large_feature_map (resnet.py: layer3 stride 1;
        # vgg.py: the '28x28' config without pool4; inception.py: no pool before Mixed_6a)
        assert model.forward_features(x).shape[-2:] == (14, 14)
        large = create_model(name, num_classes=200, large_feature_map=True).eval()
        assert large.forward_features(x).shape[-2:] == (28, 28)


def test_inception_layers_are_the_references():
    model = create_model("inception_v3", num_classes=200)
    trunk = model.backbone
    # inception.py: Conv2d_1a_3x3 stride 2 padding 1; Mixed_6a = InceptionB(288, 3, stride 1,
    # padding 1); head SPG_A3_1b / SPG_A3_2b 3x3 convs with dropout 0.5 before each and before
    # the class map
    assert trunk.Conv2d_1a_3x3.conv.padding == (1, 1) and trunk.Conv2d_1a_3x3.conv.stride == (2, 2)
    for branch in (trunk.Mixed_6a.branch3x3, trunk.Mixed_6a.branch3x3dbl_3):
        assert branch.conv.stride == (1, 1) and branch.conv.padding == (1, 1)
    convs = [m for m in model.neck if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (768, 1024, (3, 3)),
        (1024, 1024, (3, 3)),
    ]
    drops = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops == [0.5, 0.5, 0.5]
    # dropout acts in training only: two eval passes agree, two training passes do not
    x = torch.randn(2, 3, 96, 96)
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    assert not torch.allclose(model(x), model(x))


@pytest.mark.parametrize("name", ["resnet50", "vgg16", "inception_v3", "resnet18", "smallcnn"])
def test_classifier_starts_as_the_references(name):
    # wsol/util.py initialize_weights: nn.Linear weight N(0, 0.01), bias 0; InceptionCam's class
    # map is a 1 x 1 nn.Conv2d (SPG_A4), so xavier-uniform: bound sqrt(6 / (1024 + 200))
    torch.manual_seed(0)
    model = create_model(name, num_classes=200)
    w = model.classifier.weight
    assert torch.count_nonzero(model.classifier.bias) == 0
    if name == "inception_v3":
        bound = (6 / (1024 + 200)) ** 0.5
        assert w.abs().max() <= bound and w.abs().max() > 0.99 * bound
        assert abs(w.std() - bound / 3**0.5) < 1e-3
    else:
        assert w.mean().abs() < 1e-3 and 0.0095 < w.std() < 0.0105


@pytest.mark.parametrize("name", ["resnet50", "vgg16", "inception_v3"])
def test_spg_class_map_starts_as_the_references(name):
    # every *Spg model's class map is a 1 x 1 conv under initialize_weights(..., 'xavier')
    from wsol.methods import MethodConfig, create_method

    torch.manual_seed(0)
    model = create_method(MethodConfig("spg")).adapt_model(create_model(name, num_classes=200))
    w = model.classifier.weight
    bound = (6 / (w.shape[1] + 200)) ** 0.5
    assert w.abs().max() <= bound and abs(w.std() - bound / 3**0.5) < 1e-3


def _torchvision_state(monkeypatch, factory):
    from wsol.models import backbones

    torch.manual_seed(4)
    state = factory().state_dict()
    monkeypatch.setattr(backbones, "torchvision_state_dict", lambda weights_name: state)
    return state


def test_imagenet_resnet_keeps_the_pretrained_classifier(monkeypatch):
    import torchvision

    state = _torchvision_state(monkeypatch, lambda: torchvision.models.resnet50(weights=None))
    # resnet.py load_pretrained_model: the fc is removed unless dataset_name == 'ILSVRC'
    kept = create_model("resnet50", 1000, "torchvision", keep_pretrained_classifier=True)
    assert torch.equal(kept.classifier.weight, state["fc.weight"])
    assert torch.equal(kept.classifier.bias, state["fc.bias"])
    fresh = create_model("resnet50", 1000, "torchvision")
    assert not torch.equal(fresh.classifier.weight, state["fc.weight"])
    with pytest.raises(ValueError, match="1000 ImageNet classes"):
        create_model("resnet50", 200, "torchvision", keep_pretrained_classifier=True)
    with pytest.raises(ValueError, match="needs model.pretrained"):
        create_model("resnet50", 1000, None, keep_pretrained_classifier=True)


def test_vgg_and_inception_never_keep_a_pretrained_classifier(monkeypatch):
    import torchvision

    _torchvision_state(monkeypatch, lambda: torchvision.models.vgg16(weights=None))
    # vgg.py: remove_layer(state_dict, 'classifier.') for every data set
    with pytest.raises(ValueError, match="cannot keep"):
        create_model("vgg16", 1000, "torchvision", keep_pretrained_classifier=True)


# ------------------------------------------------------------------------ data pipeline
def test_transforms_equal_the_references_to_the_bit():
    from torchvision import transforms as T

    from wsol.data.dataset import eval_transform, train_transform

    # data_loaders.py get_data_loader, transcribed
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    ref_train = T.Compose(
        [
            T.Resize((256, 256)),
            T.RandomCrop(224),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
    ref_test = T.Compose([T.Resize((224, 224)), T.ToTensor(), T.Normalize(mean, std)])
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (301, 417, 3), np.uint8))
    assert torch.equal(eval_transform(224)(image), ref_test(image))
    for seed in range(4):
        torch.manual_seed(seed)
        expected = ref_train(image)
        torch.manual_seed(seed)
        assert torch.equal(train_transform(256, 224)(image), expected)


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from wsol.data import SynthSpec, make_synthetic

    root = tmp_path_factory.mktemp("ref_synth")
    make_synthetic(root, SynthSpec(classes=3, train=30, test=9, size=32, seed=2), progress=False)
    return root


def _small(root: Path, **extra) -> list[str]:
    return cpu_run(root, **{"optim.lr": 0.05, "optim.scheduler": "none", "epochs": 2, **extra})


def _log(run: Path) -> list[dict]:
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_native_cub_trains_on_every_training_image_and_has_no_silent_val(synth, tmp_path):
    official = read_cub(synth, "train")
    cfg = load_config(None, _small(synth, epochs=1))
    with pytest.raises(NoValSplit, match="metadata/CUB"):
        load_split(cfg.data, "val")  # no hold-out unless asked for
    train(cfg, tmp_path / "run", progress=False)
    # 30 training images, batch 8: no drop_last (data_loaders.py) -> all 30 are seen
    assert int(_log(tmp_path / "run")[0]["train_images"]) == len(official) == 30
    splits = yaml.safe_load((tmp_path / "run" / "splits.yaml").read_text())
    assert splits["train_images"] == 30 and splits["val"] == "none"
    assert not (tmp_path / "run" / "best.pt").exists()


def test_the_hold_out_is_used_only_when_asked_for_and_recorded(synth, tmp_path, capsys):
    cfg = load_config(None, _small(synth, epochs=1, **{"data.val_per_class": 2}))
    train(cfg, tmp_path / "run", progress=True)
    splits = yaml.safe_load((tmp_path / "run" / "splits.yaml").read_text())
    assert splits["val"].startswith("hold-out: 2 training images per class")
    assert (splits["train_images"], splits["val_images"]) == (24, 6)
    assert "val: hold-out: 2 training images per class" in capsys.readouterr().out


def test_wsol_metadata_val_split_is_used(synth, tmp_path):
    written = convert_cub(synth, tmp_path / "meta", val_per_class=2)
    cfg = load_config(
        None,
        _small(
            synth / "images",
            **{
                "data.format": "wsol",
                "data.metadata": str(written["train"].parent),
                "data.masks": str(synth / "segmentations"),
            },
        ),
    )
    train(cfg, tmp_path / "run", progress=False)
    splits = yaml.safe_load((tmp_path / "run" / "splits.yaml").read_text())
    assert splits["val"] == f"metadata: {written['val']}" and splits["val_images"] == 6
    assert splits["val_is_test"] is False and (tmp_path / "run" / "best.pt").is_file()


@pytest.fixture(scope="module")
def run_with_val(synth, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run_val") / "run"
    train(
        load_config(None, _small(synth, epochs=3, **{"data.val_per_class": 2})), run, progress=False
    )
    return run


def test_evaluate_reports_the_last_checkpoint_by_default(run_with_val, tmp_path, capsys):
    from wsol.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(run_with_val, tmp_path / "last", progress=False, echo=True)
    import json

    context = json.loads((tmp_path / "last" / "metrics.json").read_text())["context"]
    # main.py evaluates eval_checkpoint_type 'last' by default (config.py)
    assert context["checkpoint"].endswith("last.pt") and context["epoch"] == 3
    assert f"checkpoint: {run_with_val / 'last.pt'} (epoch 3)" in capsys.readouterr().out
    best_epoch = torch.load(run_with_val / "last.pt", weights_only=False)["best"]["epoch"]
    evaluate_checkpoint(run_with_val, tmp_path / "best", checkpoint="best", progress=False)
    context = json.loads((tmp_path / "best" / "metrics.json").read_text())["context"]
    assert context["checkpoint"].endswith("best.pt") and context["epoch"] == best_epoch
    assert result["images"] == 9


def test_choosing_the_best_checkpoint_on_the_test_split_is_refused(synth, tmp_path, capsys):
    from wsol.cli import main

    written = convert_cub(synth, tmp_path / "meta", val_per_class=0)
    meta = written["train"].parent
    (meta / "val").symlink_to(meta / "test", target_is_directory=True)  # val is test
    overrides = _small(
        synth / "images",
        **{
            "data.format": "wsol",
            "data.metadata": str(meta),
            "data.masks": str(synth / "segmentations"),
        },
    )
    run = tmp_path / "run"
    train(load_config(None, overrides), run, progress=False)
    assert yaml.safe_load((run / "splits.yaml").read_text())["val_is_test"] is True
    assert not (run / "best.pt").exists()  # no checkpoint is chosen on test
    code = main(["evaluate", str(run), "--checkpoint", "best", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "refused" in err and "test" in err and "Traceback" not in err
    assert main(["evaluate", str(run), "--quiet"]) == 0  # last.pt is fine
