"""The methods at their edges, with known answers worked out from clovaai/wsolevaluation's code
(``wsol/method/*.py``; each test names the line it follows): equality at every threshold, the
extreme values of every parameter, crossing ranges, all-equal and all-zero maps, a batch of one.
Where the reference is undefined there (a NaN) or the input meaningless, the choice is ours and
says so (docs/metrics.md, "Methods at their edges")."""

from __future__ import annotations

import pytest
import torch

from wsol.config import ConfigError, load_config
from wsol.methods import (
    ADL,
    create_method,
    cutmix,
    cutout,
    drop_mask,
    erase,
    foreground_loss,
    guidance_mask,
    guided_bce,
    hide_cells,
    mixup,
    normalize_maps,
    rand_box,
)
from wsol.methods.base import MethodConfig, mixed_loss
from wsol.methods.spg import IGNORE


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------ HaS
def test_has_equality_hides_the_cell():
    # has.py: `if random.random() <= drop_rate: image[...] = 0.`, one draw per cell: a draw equal
    # to the rate hides its cell
    g = _gen(3)
    draws = torch.rand(1, 2, 2, generator=g)
    rate = float(draws[0, 0, 1])
    images = torch.ones(1, 1, 4, 4)
    out, hidden = hide_cells(images, 2, rate, _gen(3))
    assert bool(hidden[0, 0, 1]) and (out[0, 0, 0:2, 2:4] == 0).all()
    assert torch.equal(hidden, draws <= rate)


def test_has_rates_zero_and_one_and_grid_zero():
    images = torch.rand(3, 3, 8, 8) + 0.1
    out, hidden = hide_cells(images, 2, 0.0, _gen())
    assert torch.equal(out, images) and not hidden.any()  # 0: nothing (ours, see the module)
    out, hidden = hide_cells(images, 2, 1.0, _gen())
    assert (out == 0).all() and hidden.all()  # 1: every cell (a draw is always <= 1)
    out, _ = hide_cells(images, 0, 1.0, _gen())
    assert torch.equal(out, images)  # has.py: `if grid_size == 0: return image`


def test_has_a_cell_larger_than_the_image_hides_all_or_nothing():
    # has.py: range(0, width, grid_size) has one step, clipped by min(): one cell, the image
    images = torch.rand(64, 3, 5, 7) + 0.1
    out, hidden = hide_cells(images, 100, 0.5, _gen(1))
    assert hidden.shape == (64, 1, 1)
    for k in range(64):
        assert (out[k] == 0).all() if hidden[k, 0, 0] else torch.equal(out[k], images[k])
    assert 0 < int(hidden.sum()) < 64


def test_has_a_batch_of_one():
    out, hidden = hide_cells(torch.ones(1, 3, 6, 6), 3, 0.5, _gen(2))
    assert out.shape == (1, 3, 6, 6) and hidden.shape == (1, 2, 2)


# ------------------------------------------------------------------------------------ ACoL
def test_acol_erasing_at_equality_and_at_the_extreme_thresholds():
    # acol.py _erase_attention: `pos = torch.ge(attention, drop_threshold)`; mask[pos] = 0
    features = torch.ones(1, 2, 1, 3)
    attention = torch.tensor([[[[0.0, 0.5, 1.0]]]])
    assert erase(features, attention, 0.5)[0, 0, 0].tolist() == [1.0, 0.0, 0.0]  # 0.5 >= 0.5
    assert erase(features, attention, 1.0)[0, 0, 0].tolist() == [1.0, 1.0, 0.0]  # only the max
    assert erase(features, attention, 0.0)[0, 0, 0].tolist() == [0.0, 0.0, 0.0]  # everything


def test_acol_all_equal_and_all_zero_maps_normalise_to_zero():
    # util.py normalize_tensor divides by max - min: 0 / 0 = NaN for a constant map, and
    # torch.ge(NaN, t) is False, so the reference erases nothing. Ours: a constant map is 0
    # (docs/metrics.md): nothing erased for any threshold above 0, everything at threshold 0
    for value in (0.0, 3.0):
        maps = torch.full((2, 1, 4, 4), value)
        norm = normalize_maps(maps)
        assert (norm == 0).all() and not norm.isnan().any()
        features = torch.ones(2, 5, 4, 4)
        assert torch.equal(erase(features, norm, 0.7), features)
        assert (erase(features, norm, 0.0) == 0).all()


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_acol_trains_a_batch_of_one_at_the_extreme_thresholds(threshold):
    from wsol.models import create_model
    from wsol.train import build_optimizer, train_step

    method = create_method(MethodConfig("acol", acol_threshold=threshold))
    model = method.adapt_model(create_model("smallcnn", 3))
    opt = build_optimizer(model, load_config(None, []))
    loss, correct = train_step(model, torch.randn(1, 3, 32, 32), torch.tensor([2]), opt, method)
    assert torch.isfinite(loss) and correct.item() in (0, 1)
    model.eval()
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, 3, 32, 32))
        cams = method.cams(model, features, torch.tensor([1]))
    assert cams.shape[0] == 1 and torch.isfinite(cams).all() and cams.max() <= 1.0


# ------------------------------------------------------------------------------------ SPG
def test_spg_masks_at_equality_of_both_thresholds():
    # spg.py mask_fg: `attention > threshold` (strict); mask_bg: `attention < threshold`
    # (strict): a pixel at exactly high is not foreground, at exactly low not background
    guide = torch.zeros(1, 1, 10, 10)
    guide[0, 0, :4] = 0.8  # 40 pixels above high: no fallback
    guide[0, 0, 4:6] = 0.5  # exactly high
    guide[0, 0, 6:8] = 0.1  # exactly low
    guide[0, 0, 8:] = 0.05
    mask = guidance_mask(guide, high=0.5, low=0.1)[0, 0]
    assert (mask[:4] == 1).all()
    assert (mask[4:6] == IGNORE).all() and (mask[6:8] == IGNORE).all()
    assert (mask[8:] == 0).all()


def test_spg_fallback_at_thirty_pixels_and_background_winning():
    # mask_fg: `if torch.sum(bool_fg.float()).item() < 30:` use 0.7 x max; mask_bg runs after
    # mask_fg (get_mask), so a pixel both above the fallback and below low is background
    guide = torch.zeros(1, 1, 10, 10)
    guide.view(-1)[:29] = 0.9  # 29 pixels above high: fewer than 30
    guide.view(-1)[29:40] = 0.7  # above 0.7 x 0.9 = 0.63: foreground by the fallback
    mask = guidance_mask(guide, high=0.8, low=0.01).view(-1)
    assert (mask[:40] == 1).all() and (mask[40:] == 0).all()
    exactly = guide.clone()
    exactly.view(-1)[:30] = 0.9  # 30 pixels: no fallback, 0.7s are not foreground
    mask = guidance_mask(exactly, high=0.8, low=0.01).view(-1)
    assert (mask[:30] == 1).all() and (mask[30:40] == IGNORE).all()
    # background wins: with low above 0.7 every fallback pixel at 0.7 is background
    mask = guidance_mask(guide, high=0.8, low=0.75).view(-1)
    assert (mask[:29] == 1).all() and (mask[29:40] == 0).all()


def test_spg_all_equal_guides_and_a_batch_of_one():
    # a constant guide v: nothing passes high 0.7, so the fallback 0.7 x v applies and every
    # pixel (v > 0.7 v) is foreground; a constant 0 passes nothing (0 > 0 is false) and is all
    # background below a positive low
    mask = guidance_mask(torch.full((1, 1, 6, 6), 0.5), high=0.7, low=0.01)
    assert (mask == 1).all()
    mask = guidance_mask(torch.zeros(1, 1, 6, 6), high=0.7, low=0.01)
    assert (mask == 0).all()
    # a constant 0 with low 0: neither foreground nor background, every pixel ignored. The
    # reference's BCE over no pixel is NaN (and ends the run); ours contributes 0, on the graph
    assert (guidance_mask(torch.zeros(1, 1, 6, 6), high=0.7, low=0.0) == IGNORE).all()
    logits = torch.zeros(1, 1, 6, 6, requires_grad=True)
    loss = guided_bce(logits, torch.zeros(1, 1, 6, 6), high=0.7, low=0.0)
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


def test_spg_crossing_thresholds_are_refused_and_spaces_cannot_draw_them():
    with pytest.raises(ConfigError, match=r"spg_threshold_2l: must be <= method.spg_threshold_2h"):
        load_config(None, ["method.method=spg", "method.spg_threshold_2h=0.3",
                           "method.spg_threshold_2l=0.4"])  # fmt: skip
    load_config(None, ["method.method=spg", "method.spg_threshold_2h=0.3",
                       "method.spg_threshold_2l=0.3"])  # equal: allowed (only the band is empty)  # fmt: skip
    from pathlib import Path

    import optuna

    from wsol.sweep import read_space, trial_seeded_sampler

    dims = read_space(Path(__file__).parent.parent / "configs" / "spaces" / "spg.yaml")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=trial_seeded_sampler(0))
    for _ in range(50):
        trial = study.ask()
        drawn: dict = {}
        for d in dims:
            drawn[d.key] = d.suggest(trial, drawn)
        for k in (1, 2, 3):
            assert drawn[f"method.spg_threshold_{k}l"] <= drawn[f"method.spg_threshold_{k}h"]
        study.tell(trial, 0.0)


# ------------------------------------------------------------------------------------ ADL
def test_adl_drop_mask_at_equality_and_at_the_extreme_thresholds():
    # adl.py _drop_mask: `(attention < max_val * adl_drop_threshold).float()`: a value equal to
    # threshold x max is dropped (0)
    attention = torch.tensor([[[[0.0, 0.5, 1.0, 0.25]]]])
    assert drop_mask(attention, 0.5)[0, 0, 0].tolist() == [1.0, 0.0, 0.0, 1.0]
    assert drop_mask(attention, 1.0)[0, 0, 0].tolist() == [1.0, 1.0, 0.0, 1.0]  # the max only
    assert drop_mask(attention, 0.0)[0, 0, 0].tolist() == [0.0, 0.0, 0.0, 0.0]  # none < 0
    # all zero: max 0, nothing below 0 x 0: everything dropped; all negative: the threshold
    # scales the (negative) max up
    assert (drop_mask(torch.zeros(1, 1, 2, 2), 0.9) == 0).all()
    neg = torch.tensor([[[[-1.0, -2.0]]]])
    assert drop_mask(neg, 0.5)[0, 0, 0].tolist() == [1.0, 1.0]  # both < -0.5


def test_adl_drop_rates_zero_and_one():
    # adl.py _select_map: floor(U[0, 1) + rate): rate 0 -> always the importance map,
    # rate 1 -> always the drop mask
    x = torch.rand(2, 4, 3, 3) + 0.1
    attention = x.mean(dim=1, keepdim=True)
    for rate, expected in (
        (0.0, x * torch.sigmoid(attention)),
        (1.0, x * drop_mask(attention, 0.9)),
    ):
        layer = ADL(rate, 0.9).train()
        for _ in range(5):
            assert torch.allclose(layer(x), expected)
    assert torch.equal(ADL(0.5, 0.9).eval()(x), x)  # eval: the identity


# ------------------------------------------------------------------------------------ CutMix
def test_cutmix_probability_at_equality_and_its_extremes():
    # the official train.py: `if args.beta > 0 and r < args.cutmix_prob:` (strict): a draw equal
    # to the probability does not mix
    images, targets = torch.rand(4, 3, 8, 8), torch.arange(4)
    r = float(torch.rand((), generator=_gen(5)))
    same = create_method(MethodConfig("cutmix", cutmix_prob=r)).prepare_batch(
        images, targets, _gen(5)
    )
    assert same.lam == 1.0 and same.images is images
    always = create_method(MethodConfig("cutmix", cutmix_prob=1.0))
    never = create_method(MethodConfig("cutmix", cutmix_prob=0.0))
    for seed in range(20):
        assert never.prepare_batch(images, targets, _gen(seed)).images is images
        assert always.prepare_batch(images, targets, _gen(seed)).images is not images


def test_cutmix_a_zero_box_and_a_batch_of_one():
    # lam = 1 (the box's side ratio sqrt(1 - lam) is 0): no pixel moves, lam stays 1
    assert rand_box(8, 8, 1.0, _gen())[2] - rand_box(8, 8, 1.0, _gen())[0] == 0
    # a batch of one mixes with itself: both label sets are the image's, the loss is plain CE
    images, targets = torch.rand(1, 3, 8, 8), torch.tensor([3])
    batch = cutmix(images, targets, 1.0, _gen(2))
    assert torch.equal(batch.images, images) and torch.equal(batch.targets_b, targets)
    logits = torch.randn(1, 5)
    assert torch.allclose(
        mixed_loss(logits, batch), torch.nn.functional.cross_entropy(logits, targets)
    )


def test_cutmix_box_halves_are_floored_on_both_sides():
    # rand_bbox: bbx1 = clip(cx - cut_w // 2, 0, W), bbx2 = clip(cx + cut_w // 2, 0, W): an odd
    # cut width keeps an even box inside the image (2 * (cut_w // 2))
    for seed in range(30):
        x0, y0, x1, y1 = rand_box(9, 9, 0.5, _gen(seed))  # cut = int(9 * sqrt(0.5)) = 6
        assert 0 <= x0 <= x1 <= 9 and 0 <= y0 <= y1 <= 9
        cx_inside = x0 > 0 and x1 < 9
        if cx_inside:
            assert x1 - x0 == 6


# ------------------------------------------------------------------------------------ Mixup, Cutout
def test_mixup_extremes_and_a_batch_of_one():
    images, targets = torch.rand(1, 3, 4, 4), torch.tensor([1])
    batch = mixup(images, targets, 1.0, _gen())
    assert torch.allclose(batch.images, images)  # blended with itself
    off = create_method(MethodConfig("mixup", mixup_alpha=0.0)).prepare_batch(
        images, targets, _gen()
    )
    assert off.lam == 1.0 and off.images is images  # alpha <= 0: unmixed, as the official code
    tiny = mixup(torch.rand(8, 3, 4, 4), torch.arange(8), 1e-3, _gen(4))
    assert tiny.lam < 1e-3 or tiny.lam > 1 - 1e-3  # Beta(a, a) with a -> 0 is 0 or 1


def test_cutout_sizes_at_their_edges():
    images = torch.ones(2, 1, 6, 6)
    assert torch.equal(cutout(images, 0.0, _gen()), images)  # no square
    assert (cutout(images, 20, _gen()) == 0).all()  # larger than the image: all of it
    one_pixel = cutout(images, 1, _gen(3))  # 1 is a side in pixels, not a fraction
    assert int((one_pixel == 0).sum()) == 2
    half = cutout(images, 0.5, _gen(3))  # < 1: a fraction of the shorter side (3 pixels)
    assert int((half == 0).sum()) <= 2 * 9


# ------------------------------------------------------------------------------------ FSL
def test_fsl_loss_at_its_edges():
    # every pixel ignored: 0 (no target); a logit map of one pixel upsampled to any size
    assert (
        foreground_loss(torch.zeros(1, 1, 1, 1), torch.full((1, 3, 3), 255, dtype=torch.uint8)) == 0
    )
    one = torch.full((1, 1, 1, 1), 2.0)
    fg = torch.ones(1, 3, 3, dtype=torch.uint8)
    expected = torch.nn.functional.softplus(torch.tensor(-2.0))
    assert foreground_loss(one, fg).item() == pytest.approx(expected.item(), rel=1e-6)


# ----------------------------------------------------------------- parameters at their bounds
@pytest.mark.parametrize(
    "params,error",
    [
        ({"method": "has", "has_grid_size": 0}, None),  # 0: nothing hidden
        ({"method": "has", "has_grid_size": -1}, "has_grid_size: must be >= 0"),
        ({"method": "has", "has_drop_rate": 1.0}, None),
        ({"method": "has", "has_drop_rate": 0.0}, None),
        ({"method": "has", "has_drop_rate": 1.5}, "has_drop_rate: must be in [0, 1], not 1.5"),
        ({"method": "has", "has_drop_rate": -0.1}, "has_drop_rate: must be in [0, 1]"),
        ({"method": "spg", "spg_threshold_1h": 1.5}, "spg_threshold_1h: must be in [0, 1]"),
        ({"method": "spg", "spg_threshold_1l": -0.5}, "spg_threshold_1l: must be in [0, 1]"),
        ({"method": "spg", "spg_threshold_3h": 1.5}, "spg_threshold_3h: must be in [0, 1]"),
        ({"method": "spg", "spg_threshold_2l": -0.5}, "spg_threshold_2l: must be in [0, 1]"),
        ({"method": "fsl", "fsl_target": "boxes"}, None),
        ({"method": "fsl", "fsl_target": "masks"}, None),
        ({"method": "fsl", "fsl_target": "box"}, "fsl_target: must be auto, boxes or masks"),
    ],
)
def test_method_parameters_at_their_bounds(params, error):
    errors = MethodConfig(**params).check()
    if error is None:
        assert errors == []
    else:
        assert len(errors) == 1 and errors[0].startswith(error), errors


def test_training_counts_top1_right_images():
    from wsol.methods import Method, MixedBatch

    logits = torch.tensor([[0.1, 2.0, 0.0], [3.0, 0.0, 1.0], [0.0, 0.0, 5.0], [1.0, 2.0, 0.0]])
    targets = torch.tensor([1, 0, 2, 0])  # argmax 1, 0, 2, 1: three right, one wrong
    batch = MixedBatch(torch.zeros(4, 3, 2, 2), targets, targets, 1.0)
    assert int(Method(MethodConfig("base")).correct(logits, batch)) == 3


def test_fsl_pixel_accuracy_upsamples_bilinearly_and_leaves_ignored_pixels_out():
    from wsol.methods.fsl import pixel_accuracy

    # a 2 x 2 logit map [-3, 1] per row, bilinear to 4 x 4 columns -3, -2, 0, 1 (align_corners
    # false): foreground (> 0, that is p > 0.5) only in the last column; nearest would be 3 and
    # 4; the 0 at column 2 is background (strictly above 0.5 counts)
    logit_map = torch.tensor([[[[-3.0, 1.0], [-3.0, 1.0]]], [[[-3.0, 1.0], [-3.0, 1.0]]]])
    first = torch.zeros(4, 4, dtype=torch.uint8)
    first[:, 2:] = 1  # columns 2 and 3 foreground: column 2 wrong, the rest right: 3 / 4
    second = torch.full((4, 4), IGNORE, dtype=torch.uint8)
    second[0, 3] = 1  # one pixel kept, right: 1 / 1
    got = pixel_accuracy(logit_map, torch.stack([first, second]))
    assert float(got) == pytest.approx(0.75 + 1.0)
    all_ignored = torch.full((1, 4, 4), IGNORE, dtype=torch.uint8)
    assert float(pixel_accuracy(logit_map[:1], all_ignored)) == 0.0


def test_fsl_loss_upsamples_bilinearly():
    import torch.nn.functional as F

    from wsol.methods.fsl import foreground_loss

    logit_map = torch.tensor([[[[-3.0, 1.0], [2.0, -1.0]]]])
    target = torch.zeros(1, 4, 4, dtype=torch.uint8)
    target[:, :2, 2:] = 1
    target[0, 3, 3] = IGNORE
    up = F.interpolate(logit_map, size=(4, 4), mode="bilinear")[0, 0]
    keep = target[0] != IGNORE
    expected = F.binary_cross_entropy_with_logits(up[keep], target[0][keep].float())
    torch.testing.assert_close(foreground_loss(logit_map, target), expected)


def test_fsl_freezes_the_classifier_and_trains_its_head_at_the_head_rate():
    from wsol.methods import MixedBatch, create_method
    from wsol.models import create_model

    method = create_method(MethodConfig("fsl"))
    model = method.adapt_model(create_model("smallcnn", 3))
    assert not any(p.requires_grad for p in model.classifier.parameters())
    assert model.is_head_parameter("method_head.score.weight")
    images, masks = torch.randn(2, 3, 32, 32), torch.zeros(2, 32, 32, dtype=torch.uint8)
    batch = method.prepare_batch(images, masks, None)
    assert batch.targets_b is masks and batch.lam == 1.0 and batch.images is images
    foreground, loss = method.training_loss(model, MixedBatch(images, masks, masks, 1.0))
    features = model.forward_features(images)
    assert foreground.shape == (2, 1, *features.shape[-2:])  # a 1 x 1 conv keeps the grid
    assert torch.isfinite(loss)


def _split_without(kind: str):
    from pathlib import Path

    from wsol.data.records import DatasetSplit, ImageRecord

    box = [(0.0, 0.0, 4.0, 4.0)]
    records = [
        ImageRecord("a.jpg", Path("a.jpg"), 0, (8, 8), boxes=box, mask_paths=[Path("a.png")]),
        ImageRecord(
            "b.jpg", Path("b.jpg"), 0, (8, 8),
            boxes=[] if kind in ("boxes", "both") else box,
            mask_paths=[] if kind in ("masks", "both") else [Path("b.png")],
        ),
    ]  # fmt: skip
    return DatasetSplit("t", "val", records)


@pytest.mark.parametrize(
    "target,missing,message",
    [
        ("boxes", "boxes", "(method.fsl_target boxes), and image b.jpg has no box"),
        ("masks", "masks", "(method.fsl_target masks), and image b.jpg has no mask"),
        ("auto", "both", "(method.fsl_target auto), and image b.jpg has no box or mask"),
        ("auto", "boxes", None),  # a mask suffices
        ("auto", "masks", None),  # a box suffices
        ("boxes", "masks", None),
        ("masks", "boxes", None),
    ],
)
def test_fsl_names_the_image_without_what_it_trains_on(target, missing, message):
    from wsol.methods import create_method

    method = create_method(MethodConfig("fsl", fsl_target=target))
    split = _split_without(missing)
    if message is None:
        method.check_train_split(split)
        return
    with pytest.raises(ValueError) as err:
        method.check_train_split(split)
    assert str(err.value) == f"method fsl trains on the val split's localization {message}"


@pytest.mark.parametrize("name", ["base", "fsl"])
@pytest.mark.parametrize("decode", ["cpu", "device"])
@pytest.mark.parametrize("skip", [True, False])
def test_training_datasets_follow_the_data_section(name, decode, skip):
    from wsol.config import DataConfig
    from wsol.data.dataset import EncodedDataset
    from wsol.methods import create_method

    data = DataConfig(decode=decode, skip_bad_images=skip, resize_size=36, crop_size=32)
    dataset = create_method(MethodConfig(name)).train_dataset(_split_without("none"), data)
    assert dataset.skip_bad is skip
    # only plain image batches can be decoded on the device; FSL's carry masks
    assert isinstance(dataset, EncodedDataset) == (decode == "device" and name == "base")


def test_has_grid_one_hides_single_pixels_and_grid_zero_returns_an_empty_mask():
    images = torch.ones(2, 3, 6, 6)
    hidden_images, hidden = hide_cells(images, 1, 0.5, _gen(3))
    assert hidden.shape == (2, 6, 6) and hidden.any() and not hidden.all()
    torch.testing.assert_close(hidden_images[:, 0] == 0, hidden)  # one cell = one pixel
    same, none = hide_cells(images, 0, 0.5, _gen(3))
    assert same is images and none.shape == (2, 0, 0) and none.dtype == torch.bool


def test_label_smoothing_reaches_the_loss_of_every_mixing_method():
    import torch.nn.functional as F

    from wsol.methods import MixedBatch, create_method
    from wsol.models import create_model

    torch.manual_seed(0)
    model = create_model("smallcnn", 3)
    x, y, z = torch.randn(2, 3, 32, 32), torch.tensor([0, 2]), torch.tensor([1, 1])
    for name in ("base", "cutmix"):
        method = create_method(MethodConfig(name))
        logits, loss = method.training_loss(model, MixedBatch(x, y, z, 0.25), 0.1)
        expected = 0.25 * F.cross_entropy(logits, y, label_smoothing=0.1) + 0.75 * F.cross_entropy(
            logits, z, label_smoothing=0.1
        )
        torch.testing.assert_close(loss, expected)


def test_adl_layers_take_both_parameters_and_only_inception_loses_its_dropout():
    from torch import nn

    from wsol.methods import create_method
    from wsol.models import create_model

    method = create_method(MethodConfig("adl", adl_drop_rate=0.3, adl_threshold=0.6))
    model = method.adapt_model(create_model("inception_v3", 3))
    assert [(m.drop_rate, m.threshold) for m in model.adl_layers] == [(0.3, 0.6)] * 3
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts and all(m.p == 0.0 for m in dropouts)  # InceptionAdl has no head dropout
    resnet = method.adapt_model(create_model("resnet18", 3))
    vgg = method.adapt_model(create_model("vgg16", 3))
    for other in (resnet, vgg):
        assert all(m.p > 0 for m in other.modules() if isinstance(m, nn.Dropout))


def test_cutmix_defaults_to_beta_one():
    from wsol.methods import cutmix

    images, targets = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    default = cutmix(images, targets, generator=_gen(9))
    explicit = cutmix(images, targets, 1.0, generator=_gen(9))
    assert default.lam == explicit.lam and torch.equal(default.images, explicit.images)


def test_label_smoothing_reaches_acol_and_spg_losses():
    # wsolevaluation's ACoL / SPG losses are cross-entropies of the class logits (acol.py,
    # spg.py): a smoothing given to training must reach each of them
    from wsol.methods import MixedBatch, create_method
    from wsol.models import create_model

    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0, 2])
    for name in ("acol", "spg"):
        torch.manual_seed(0)
        method = create_method(MethodConfig(name))
        model = method.adapt_model(create_model("smallcnn", 3))
        batch = MixedBatch(x, y, y, 1.0)
        _, plain = method.training_loss(model, batch, 0.0)
        _, smoothed = method.training_loss(model, batch, 0.3)
        assert not torch.allclose(plain, smoothed), name


def test_acol_loss_is_both_branches_cross_entropies_at_the_given_smoothing():
    # wsolevaluation main.py (acol): loss = CE(logits) + CE(logits_b), both against the image's
    # label; each branch takes the run's label smoothing, so the sum equals that formula
    import torch.nn.functional as F

    from wsol.methods import MixedBatch
    from wsol.models import create_model

    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0, 2])
    torch.manual_seed(0)
    method = create_method(MethodConfig("acol"))
    model = method.adapt_model(create_model("smallcnn", 3)).eval()
    out = model(x, y)
    for ls in (0.0, 0.3):
        expected = F.cross_entropy(out["logits"], y, label_smoothing=ls) + F.cross_entropy(
            out["logits_b"], y, label_smoothing=ls
        )
        _, loss = method.training_loss(model, MixedBatch(x, y, y, 1.0), ls)
        torch.testing.assert_close(loss, expected)


def test_default_arguments_are_the_references():
    # ADL's defaults: wsolevaluation config.py --adl_drop_rate 0.75, --adl_threshold 0.9;
    # losses without a smoothing are plain cross-entropies
    import torch.nn.functional as F

    from wsol.methods import Method, MixedBatch

    layer = ADL()
    assert (layer.drop_rate, layer.threshold) == (0.75, 0.9)
    logits, y = torch.randn(3, 4), torch.tensor([0, 3, 1])
    batch = MixedBatch(torch.zeros(3, 3, 2, 2), y, y, 1.0)
    torch.testing.assert_close(
        Method(MethodConfig("base")).loss(logits, batch), F.cross_entropy(logits, y)
    )


def test_adl_keeps_the_dropout_of_a_model_that_does_not_drop_it():
    from torch import nn

    from wsol.methods import create_method

    class Plain(nn.Module):  # no adl_without_dropout attribute: its dropout stays
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(0.5)

        def adl_sites(self):
            return []

    model = create_method(MethodConfig("adl")).adapt_model(Plain())
    assert model.drop.p == 0.5  # only a model that says adl_without_dropout loses it

    class Inception(Plain):
        adl_without_dropout = True

    assert create_method(MethodConfig("adl")).adapt_model(Inception()).drop.p == 0.0


def test_method_config_takes_its_name_and_parameters_and_joins_its_errors():
    cfg = MethodConfig("has", has_grid_size=3, has_drop_rate=0.25)
    assert (cfg.method, cfg.has_grid_size, cfg.has_drop_rate) == ("has", 3, 0.25)
    assert MethodConfig(method="acol", acol_threshold=0.4).acol_threshold == 0.4
    assert MethodConfig("base").method == "base"
    with pytest.raises(TypeError, match="go by name"):
        MethodConfig("has", 3)
    with pytest.raises(ValueError) as err:
        MethodConfig("has", nope=1, other=2)
    assert str(err.value) == (
        "nope: unknown key for method has (its parameters: has_grid_size, has_drop_rate); "
        "other: unknown key for method has (its parameters: has_grid_size, has_drop_rate)"
    )
    with pytest.raises(ValueError) as err:  # the section's "method: " is not the caller's
        MethodConfig("nope")
    assert str(err.value).startswith("unknown method 'nope': "), str(err.value)
    assert MethodConfig("acol", acol_threshold=2.0).check() == [
        "acol_threshold: must be in [0, 1], not 2.0"
    ]


def test_spg_counts_only_pixels_strictly_above_high_before_its_fallback():
    # spg.py get_mask: the foreground count is of pixels > high; 40 pixels exactly at high do
    # not count, so the 30-pixel fallback (> 0.7 * max) makes them foreground
    guide = torch.zeros(1, 1, 10, 10)
    guide.view(-1)[:40] = 0.5
    mask = guidance_mask(guide, 0.5, 0.01)
    assert int((mask == 1).sum()) == 40


def test_spg_bce_over_no_pixel_is_zero_on_the_graph():
    logits = torch.randn(1, 1, 4, 4, requires_grad=True)
    # a zero guide with low 0: no pixel above 0.7 * max (0), none below 0: all ignored
    loss = guided_bce(logits, torch.zeros(1, 1, 4, 4), 0.5, 0.0)
    assert float(loss.detach()) == 0.0 and loss.requires_grad


def test_tscam_head_trains_at_the_head_rate():
    # TS-CAM trains every parameter at one rate (head_lr_mult 1 in its recipes); with another
    # multiplier its new conv head is a head, like every method head
    from wsol.config import load_config
    from wsol.methods import create_method
    from wsol.models import create_model
    from wsol.train import build_optimizer

    model = create_method(MethodConfig("tscam")).adapt_model(create_model("vit_micro", 3))
    opt = build_optimizer(model, load_config(None, ["optim.lr=0.001", "optim.head_lr_mult=10"]))
    rates = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    heads = [p for n, p in model.named_parameters() if n.startswith("method_head.")]
    assert heads and all(rates[id(p)] == pytest.approx(0.01) for p in heads)


def test_an_unknown_key_names_the_methods_own_parameters():
    from wsol.methods.base import method_section

    with pytest.raises(ValueError) as err:
        MethodConfig("has", nope=1)
    assert str(err.value) == (
        "nope: unknown key for method has (its parameters: has_grid_size, has_drop_rate)"
    )
    with pytest.raises(ValueError, match=r"unknown key for method base \(its parameters: none\)"):
        MethodConfig("base", nope=1)
    target, kept, errors = method_section({})  # no method named: plain CAM training
    assert target is MethodConfig and errors == [] and kept.get("method", "base") == "base"


def test_a_method_parameters_class_takes_its_name_positionally_and_refuses_another():
    from wsol.methods.has import HaSParams

    assert HaSParams("has", has_grid_size=3).has_grid_size == 3
    with pytest.raises(ValueError, match="method acol's parameters are ACoLParams, not HaSParams"):
        HaSParams("acol")


def test_a_legacy_key_at_its_default_does_not_hide_the_keys_after_it():
    # an earlier version's flat section lists every method's keys; one at its old default is
    # dropped and reading goes on to the next key
    from wsol.methods.base import method_section

    target, kept, errors = method_section(
        {"method": "has", "cutmix_beta": 1.0, "has_grid_size": 3, "nope": 1}
    )
    assert target.__name__ == "HaSParams" and kept == {"method": "has", "has_grid_size": 3}
    assert errors and errors[0].startswith("nope: unknown key")


def test_cutmix_a_one_pixel_cut_at_the_left_and_top_edge_is_empty():
    # CutMix-PyTorch train.py rand_bbox: bbx2 = np.clip(cx + cut_w // 2, 0, W); at cx = 0 a cut
    # one pixel wide (cut_w // 2 = 0) gives bbx1 = bbx2 = 0, an empty box (likewise for y)
    seen = 0
    for seed in range(200):
        gen = _gen(seed)
        cx, cy = int(torch.randint(2, (), generator=gen)), int(torch.randint(2, (), generator=gen))
        if (cx, cy) != (0, 0):
            continue
        assert rand_box(2, 2, 0.5, _gen(seed)) == (0, 0, 0, 0)  # int(2 * sqrt(0.5)) = 1
        seen += 1
    assert seen > 0


def test_has_at_a_drop_rate_of_zero_hides_nothing_even_on_a_draw_of_zero(monkeypatch):
    # the reference hides a cell when random.random() <= drop_rate; at a rate of 0 a draw of
    # exactly 0.0 would hide it. Ours hides nothing at 0 (has.py, documented there): a run at
    # rate 0 is plain training. Every draw is forced to 0.0 here.
    monkeypatch.setattr(torch, "rand", lambda *shape, **kw: torch.zeros(*shape))
    images = torch.ones(2, 3, 8, 8)
    out, hidden = hide_cells(images, 4, 0.0)
    assert not hidden.any() and torch.equal(out, images)
    _, hidden = hide_cells(images, 4, 0.5)  # a positive rate hides the cells drawn at 0
    assert hidden.all()
