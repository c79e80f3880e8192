"""Methods are registered objects; training and evaluation reach one only through its hooks."""

from __future__ import annotations

import copy

import pytest
import torch

from wsol.config import load_config
from wsol.methods import Method, MethodConfig, create_method, list_methods, register_method
from wsol.methods.base import _REGISTRY

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_the_registry_lists_every_method_and_builds_it_from_its_config():
    assert list_methods() == [
        "acol", "adl", "base", "cutmix", "cutout", "fsl", "has", "mixup", "sat", "spg", "tscam"
    ]  # fmt: skip
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

    assert (MethodConfig("has").has_grid_size, MethodConfig("has").has_drop_rate) == (4, 0.5)
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


ALL_METHODS = ["base", "cutmix", "mixup", "cutout", "has", "acol", "spg", "adl"]


@pytest.mark.parametrize("name", ALL_METHODS)
@pytest.mark.parametrize("model_name", ["smallcnn", "resnet18"])
def test_every_method_trains_every_small_model(name, model_name):
    from wsol.models import create_model
    from wsol.train import train_step

    torch.manual_seed(0)
    model = create_model(model_name, num_classes=3)
    params = {"cutout": {"cutout_size": 8}, "has": {"has_grid_size": 8}}.get(name, {})
    method = create_method(MethodConfig(name, **params))
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


def test_adl_drop_mask_and_importance_map():
    # wsolevaluation wsol/method/adl.py: attention = channel mean; drop mask 1 where attention <
    # threshold * per-image max; importance map sigmoid(attention); the drop mask with
    # probability drop_rate (one draw per forward), identity in eval mode
    from wsol.methods import ADL, drop_mask

    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[3.0, 2.0], [1.0, 8.0]]]])  # (1, 2, 2, 2)
    attention = x.mean(dim=1, keepdim=True)  # [[2, 2], [2, 6]]
    assert drop_mask(attention, 0.9).tolist() == [[[[1.0, 1.0], [1.0, 0.0]]]]
    assert drop_mask(attention, 0.3).tolist() == [[[[0.0, 0.0], [0.0, 0.0]]]]
    always, never = ADL(drop_rate=1.0, threshold=0.9), ADL(drop_rate=0.0, threshold=0.9)
    torch.testing.assert_close(always(x), x * drop_mask(attention, 0.9))
    torch.testing.assert_close(never(x), x * torch.sigmoid(attention))
    always.eval()
    assert always(x) is x
    layer = ADL(drop_rate=0.75)
    torch.manual_seed(0)
    dropped = sum(torch.equal(layer(x), x * drop_mask(attention, 0.9)) for _ in range(400))
    assert 240 <= dropped <= 360  # about 3 in 4


@pytest.mark.parametrize("name", ["resnet50", "vgg16", "inception_v3", "resnet18", "smallcnn"])
def test_adl_sits_at_the_references_positions_and_leaves_weights_alone(name):
    from wsol.models import create_model

    torch.manual_seed(0)
    plain = create_model(name, num_classes=3)
    keys = set(plain.state_dict())
    model = create_method(MethodConfig("adl")).adapt_model(plain)
    assert set(model.state_dict()) == keys  # ADL has no weights: checkpoints load unchanged
    expected = {"resnet50": 3, "vgg16": 3, "inception_v3": 3, "resnet18": 3, "smallcnn": 1}
    assert len(model.adl_layers) == expected[name]
    size = 96 if name == "inception_v3" else 64
    x = torch.randn(2, 3, size, size)
    model.eval()
    with torch.no_grad():
        ref = model(x)
        for layer in model.adl_layers:
            layer.drop_rate = 1.0
        torch.testing.assert_close(model(x), ref)  # eval: ADL passes through
        model.train()
        assert not torch.allclose(model(x), ref)  # training: the drop masks act
    if name == "inception_v3":
        assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))


def test_center_baseline_is_a_centred_gaussian_and_evaluates_like_a_cam_folder(tmp_path, capsys):
    import json

    import numpy as np

    from wsol.baselines import center_gaussian
    from wsol.cli import main

    m = center_gaussian((224, 224))
    # docs/metrics.md: exp(-((x - 111.5)^2 + (y - 111.5)^2) / (2 * 56^2))
    assert m.shape == (224, 224) and m[111, 111] == m[112, 112] == m.max()
    assert m[0, 0] == pytest.approx(np.exp(-(2 * 111.5**2) / (2 * 56.0**2)))
    assert m[50, 120] == pytest.approx(np.exp(-((120 - 111.5) ** 2 + (50 - 111.5) ** 2) / 6272))
    rect = center_gaussian((300, 200))
    assert rect.shape == (200, 300) and np.unravel_index(rect.argmax(), rect.shape) == (99, 149)
    meta = tmp_path / "meta"
    meta.mkdir()
    ids = ["a.jpg", "b.jpg", "c.jpg"]
    (meta / "image_ids.txt").write_text("".join(f"{i}\n" for i in ids))
    (meta / "class_labels.txt").write_text("".join(f"{i},0\n" for i in ids))
    (meta / "image_sizes.txt").write_text("a.jpg,100,100\nb.jpg,200,100\nc.jpg,50,80\n")
    (meta / "localization.txt").write_text("a.jpg,30,30,70,70\nb.jpg,0,0,60,99\nc.jpg,5,5,45,75\n")
    folder = tmp_path / "cams"
    folder.mkdir()
    for i in ids:
        np.save(folder / f"{i}.npy", m)
    base = ["evaluate", "--metadata", str(meta), "--quiet", "--cam-curve-interval", "0.01"]
    assert main([*base, "--baseline", "center", "--out", str(tmp_path / "center")]) == 0
    assert main([*base, "--cams", str(folder), "--out", str(tmp_path / "folder")]) == 0
    a = json.loads((tmp_path / "center" / "metrics.json").read_text())
    b = json.loads((tmp_path / "folder" / "metrics.json").read_text())
    assert a["box"] == b["box"] and a["context"]["method"] == "center-baseline"


@pytest.mark.parametrize("model_name", ["resnet50", "vgg16", "inception_v3"])
def test_every_method_runs_on_every_reference_backbone_at_224(model_name):
    """One training forward pass (batch, loss) and the CAMs of every method, random weights."""
    from wsol.models import create_model

    images, targets = torch.randn(1, 3, 224, 224), torch.tensor([2])  # one image: CPU time
    torch.manual_seed(0)
    built = create_model(model_name, num_classes=3)  # built once: initialising is most of the time
    after_build = torch.get_rng_state()
    for name in ALL_METHODS:
        torch.set_rng_state(after_build)  # as if each method's model were built anew from seed 0
        method = create_method(MethodConfig(name))
        model = method.adapt_model(copy.deepcopy(built))
        with torch.no_grad():
            batch = method.prepare_batch(images, targets, torch.Generator().manual_seed(0))
            logits, loss = method.training_loss(model, batch)
            assert logits.shape == (1, 3) and torch.isfinite(loss), name
            model.eval()
            logits, features = model.forward_with_features(images)
            cams = method.cams(model, features, targets)
        assert cams.shape == (1, 14, 14) and torch.isfinite(cams).all(), name


def test_acol_erases_where_the_normalised_map_reaches_the_threshold():
    # wsolevaluation wsol/method/acol.py _erase_attention: mask 0 where attention >= threshold
    # (the attention: branch A's class map, min-max normalised per image, util.get_attention)
    from wsol.methods import AcolHead, erase, normalize_maps

    class_map = torch.tensor([[[[2.0, 4.0], [5.0, 12.0]]]])  # normalised: 0, .2, .3, 1
    attention = normalize_maps(class_map)
    torch.testing.assert_close(attention, torch.tensor([[[[0.0, 0.2], [0.3, 1.0]]]]))
    features = torch.ones(1, 3, 2, 2)
    assert erase(features, attention, 0.3)[0, :, :, :].tolist() == [[[1.0, 1.0], [0.0, 0.0]]] * 3
    assert erase(features, attention, 0.31).sum() == 9  # only the maximum reaches 0.31
    assert normalize_maps(torch.full((1, 1, 2, 2), 3.0)).abs().sum() == 0  # constant: 0, not NaN

    head = AcolHead(channels=3, width=4, num_classes=2, threshold=0.5)
    seen = {}
    head.branch_b.register_forward_pre_hook(lambda _m, args: seen.setdefault("b", args[0]))
    features = torch.rand(1, 3, 4, 4)
    maps_a, _ = head.maps(features, torch.tensor([1]))
    a = normalize_maps(maps_a[:, 1:2].detach())
    torch.testing.assert_close(seen["b"], features * (a < 0.5))
    out = head(None, features, torch.tensor([1]))
    assert set(out) == {"logits", "logits_b"}
    torch.testing.assert_close(out["logits"], maps_a.mean(dim=(2, 3)))


def test_acol_cam_is_the_maximum_of_both_normalised_branches():
    # wsolevaluation resnet.py ResNetAcol.forward(return_cam=True): max(normalize(feat_map_a),
    # normalize(feat_map_b))[labels], B reading features erased with the labels' maps
    from wsol.methods import AcolHead, normalize_maps

    torch.manual_seed(0)
    head = AcolHead(channels=3, width=4, num_classes=2, threshold=0.6)
    features, classes = torch.rand(2, 3, 5, 5), torch.tensor([0, 1])
    maps_a, maps_b = head.maps(features, classes)
    rows = torch.arange(2)
    expected = torch.maximum(
        normalize_maps(maps_a[rows, classes]), normalize_maps(maps_b[rows, classes])
    )
    torch.testing.assert_close(head.cams(features, classes), expected)


def test_spg_guidance_masks():
    # wsolevaluation wsol/method/spg.py get_mask: 255 everywhere, 1 where attention > high (or
    # > 0.7 x max when fewer than 30 pixels pass), then 0 where attention < low
    from wsol.methods import guidance_mask

    guide = torch.zeros(2, 1, 8, 8)
    guide[0, 0, :4] = 0.9  # 32 pixels above high 0.7: foreground as they are
    guide[0, 0, 4:, :] = 0.3  # in between: ignored
    guide[0, 0, 7, 7] = 0.005  # below low: background
    guide[1, 0] = 0.2
    guide[1, 0, 0, :5] = torch.tensor([0.5, 0.6, 0.61, 0.65, 0.6])  # none above .7: 0.7 x .65
    mask = guidance_mask(guide, high=0.7, low=0.01)
    assert (mask[0, 0, :4] == 1).all() and (mask[0, 0, 4:7] == 255).all()
    assert mask[0, 0, 7, 7] == 0 and (mask[0, 0, 7, :7] == 255).all()
    # image 1: 0.7 x 0.65 = 0.455 -> the five values above it are foreground, 0.2 ignored
    assert mask[1, 0, 0, :5].tolist() == [1.0] * 5 and (mask[1, 0, 1:] == 255).all()
    assert guidance_mask(guide, high=0.7, low=0.25)[1, 0, 1:].eq(0).all()  # low wins


def test_spg_bce_skips_ignored_pixels_and_the_loss_sums_four_terms():
    from wsol.methods import guidance_mask, guided_bce, spg_loss

    torch.manual_seed(0)
    logits, guide = torch.randn(2, 1, 6, 6), torch.rand(2, 1, 6, 6)
    mask = guidance_mask(guide, 0.6, 0.2)
    keep = mask != 255
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[keep], mask[keep])
    torch.testing.assert_close(guided_bce(logits, guide, 0.6, 0.2), expected)

    targets = torch.tensor([1, 0])
    out = {
        "logits": torch.randn(2, 3),
        "class_map": torch.randn(2, 1, 3, 3),
        "logits_b1": torch.randn(2, 1, 3, 3),
        "logits_b2": torch.randn(2, 1, 3, 3),
        "logits_c": torch.randn(2, 1, 3, 3),
    }
    thresholds = ((0.7, 0.01), (0.5, 0.05), (0.7, 0.1))
    up = lambda t: torch.nn.functional.interpolate(t, size=(12, 12), mode="bilinear")  # noqa: E731
    b1, b2, c = up(out["logits_b1"]), up(out["logits_b2"]), up(out["logits_c"])
    from wsol.methods import normalize_maps

    expected = (
        torch.nn.functional.cross_entropy(out["logits"], targets)
        + guided_bce(b2, normalize_maps(up(out["class_map"])), 0.7, 0.01)
        + guided_bce(b1, torch.sigmoid(b2), 0.5, 0.05)
        + guided_bce(c, (torch.sigmoid(b1) + torch.sigmoid(b2)) / 2, 0.7, 0.1)
    )
    torch.testing.assert_close(spg_loss(out, targets, (12, 12), thresholds), expected)


def test_center_baseline_and_cam_folders_evaluate_against_a_data_root(synth_root, tmp_path):
    """`wsol evaluate --baseline center --data ROOT --split test` reads the split as training
    would (here the synthetic CUB layout), without wsolevaluation metadata."""
    import json

    import numpy as np

    from wsol.baselines import center_gaussian
    from wsol.cli import main
    from wsol.data.cub import read_cub

    ids = [r.image_id for r in read_cub(synth_root, "test").records]
    folder = tmp_path / "cams"
    for i in ids:
        (folder / i).parent.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{i}.npy", center_gaussian((224, 224)))
    base = ["evaluate", "--data", str(synth_root), "--split", "test", "--quiet"]
    assert main([*base, "--baseline", "center", "--out", str(tmp_path / "center")]) == 0
    assert main([*base, "--cams", str(folder), "--out", str(tmp_path / "folder")]) == 0
    a = json.loads((tmp_path / "center" / "metrics.json").read_text())
    b = json.loads((tmp_path / "folder" / "metrics.json").read_text())
    assert a["box"] == b["box"] and a["MaxBoxAccV2"] == b["MaxBoxAccV2"] > 0
    assert a["context"]["data"] == str(synth_root.resolve()) and a["split"] == "test"
    rows = (tmp_path / "center" / "per_image.csv").read_text().splitlines()
    assert len(rows) == len(ids) + 1


def test_acol_cams_reuse_branch_a_of_the_same_forward_pass():
    # evaluation reads logits and CAMs from one forward pass: branch A runs once per batch
    from wsol.methods import AcolHead

    torch.manual_seed(3)
    head = AcolHead(channels=3, width=4, num_classes=2, threshold=0.6).eval()
    features, classes = torch.rand(2, 3, 5, 5), torch.tensor([1, 0])
    calls = []
    head.branch_a.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        fresh = head.cams(features, classes)  # no forward before: A runs here
        head(None, features)
        reused = head.cams(features, classes)
        head(None, features)
        other = head.cams(features.clone(), classes)  # other features: A runs again
    assert len(calls) == 4
    torch.testing.assert_close(reused, fresh)
    torch.testing.assert_close(other, fresh)


def test_each_method_owns_its_parameters():
    # a method declares its parameters as a dataclass registered with it; a recipe's method
    # section is checked against that method's own fields
    from wsol.config import ConfigError, load_config
    from wsol.methods.base import method_fields

    assert method_fields("has") == ["method", "has_grid_size", "has_drop_rate"]
    assert method_fields("base") == ["method"]
    for name in list_methods():
        params = MethodConfig(name)
        assert params.method == name and type(params) is (_REGISTRY[name].params or MethodConfig)
    with pytest.raises(ConfigError, match="method.cutmix_beta: unknown key for method has"):
        load_config(None, ["method.method=has", "method.cutmix_beta=2"])
    # an earlier version's flat section (every method's keys at their defaults) still loads
    from wsol.methods.base import LEGACY_DEFAULTS

    cfg = load_config(None, ["method.method=has", "method.has_grid_size=16",
                             *(f"method.{k}={v}" for k, v in LEGACY_DEFAULTS.items()
                               if not k.startswith("has_"))])  # fmt: skip
    assert cfg.method == MethodConfig("has", has_grid_size=16)
