import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wsol.mixing import MixingConfig, cutmix, cutout, mix_batch, mixed_loss, mixup, rand_box


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("h,w", [(32, 32), (20, 50), (50, 20)])
def test_cutmix_box_inside_and_lambda_is_the_pasted_area(h, w):
    for seed in range(50):
        images = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 3, h, w).clone()
        targets = torch.tensor([0, 1, 2, 3])
        batch = cutmix(images, targets, beta=1.0, generator=_gen(seed))
        changed = (batch.images != images).any(dim=1)  # (B, H, W)
        partner = batch.targets_b  # image k received a patch of image targets_b[k]
        for k in range(4):
            if partner[k] == k:
                assert not changed[k].any()
                continue
            ys, xs = torch.nonzero(changed[k], as_tuple=True)
            area = changed[k].sum().item()
            assert 1.0 - area / (h * w) == pytest.approx(batch.lam, abs=1e-12)
            if area:
                # a rectangle inside the image, filled with the partner's pixels
                assert (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1) == area
                assert (batch.images[k][:, changed[k]] == float(partner[k])).all()


def test_rand_box_keeps_height_and_width_apart():
    g = _gen(1)
    for _ in range(200):
        x0, y0, x1, y1 = rand_box(10, 100, lam=0.0, generator=g)  # a full-size cut, clipped
        assert 0 <= x0 <= x1 <= 100 and 0 <= y0 <= y1 <= 10
        assert x1 - x0 <= 100 and y1 - y0 <= 10
    x0, y0, x1, y1 = rand_box(10, 100, lam=0.75, generator=_gen(2))  # side ratio 0.5
    assert x1 - x0 <= 50 and y1 - y0 <= 5


def test_mixed_loss_weights_both_label_sets():
    images = torch.randn(6, 3, 16, 16)
    targets = torch.tensor([0, 1, 2, 0, 1, 2])
    batch = cutmix(images, targets, generator=_gen(3))
    logits = torch.randn(6, 3)
    expected = batch.lam * F.cross_entropy(logits, batch.targets_a) + (
        1 - batch.lam
    ) * F.cross_entropy(logits, batch.targets_b)
    assert mixed_loss(logits, batch).item() == pytest.approx(expected.item())
    assert torch.equal(batch.targets_a, targets)
    assert sorted(batch.targets_b.tolist()) == sorted(targets.tolist())  # a permutation
    smooth = mixed_loss(logits, batch, label_smoothing=0.1)
    assert smooth.item() != pytest.approx(mixed_loss(logits, batch).item())


def test_deterministic_under_a_seed_and_prob():
    images, targets = torch.randn(8, 3, 12, 20), torch.arange(8)
    a, b = cutmix(images, targets, generator=_gen(5)), cutmix(images, targets, generator=_gen(5))
    assert (
        torch.equal(a.images, b.images) and a.lam == b.lam and torch.equal(a.targets_b, b.targets_b)
    )
    c = cutmix(images, targets, generator=_gen(6))
    assert not torch.equal(a.images, c.images) or a.lam != c.lam
    never = MixingConfig(method="cutmix", cutmix_prob=0.0)
    assert mix_batch(images, targets, never, _gen(0)).lam == 1.0
    always = MixingConfig(method="cutmix", cutmix_prob=1.0)
    assert sum(mix_batch(images, targets, always, _gen(s)).lam < 1.0 for s in range(20)) >= 15


def test_mixup_blends_and_cutout_zeros_a_square():
    images, targets = torch.rand(4, 3, 10, 10), torch.arange(4)
    m = mixup(images, targets, alpha=1.0, generator=_gen(0))
    index = [targets.tolist().index(t) for t in m.targets_b.tolist()]
    assert torch.allclose(m.images, m.lam * images + (1 - m.lam) * images[index])
    out = cutout(torch.ones(16, 1, 20, 30), size=6, generator=_gen(0))
    for k in range(16):
        holes = (out[k, 0] == 0).nonzero()
        assert len(holes) <= 36
        if len(holes):
            assert (
                holes[:, 0].max() - holes[:, 0].min() < 6
                and holes[:, 1].max() - holes[:, 1].min() < 6
            )
    with pytest.raises(ValueError, match="unknown method"):
        MixingConfig(method="cutpaste")


def test_nonpositive_beta_or_alpha_leaves_the_batch_unmixed():
    # clovaai/CutMix-PyTorch train.py: `if args.beta > 0 and r < args.cutmix_prob`;
    # wsolevaluation main.py: `... and self.args.cutmix_beta > 0`; Mixup (mixup-cifar10):
    # lam = 1 when alpha <= 0
    images = torch.randn(4, 3, 8, 8)
    targets = torch.tensor([0, 1, 2, 3])
    for config in (
        MixingConfig("cutmix", cutmix_beta=0.0),
        MixingConfig("cutmix", cutmix_beta=-1.0),
        MixingConfig("mixup", mixup_alpha=0.0),
    ):
        for seed in range(5):
            batch = mix_batch(images, targets, config, _gen(seed))
            assert torch.equal(batch.images, images) and batch.lam == 1.0
            assert torch.equal(batch.targets_a, targets) and torch.equal(batch.targets_b, targets)
    mixed = mix_batch(images, targets, MixingConfig("cutmix", cutmix_beta=1.0), _gen(0))
    assert mixed.lam < 1.0  # a positive beta does mix


def _reference_box(h, w, lam, cx, cy):
    """clovaai/CutMix-PyTorch train.py rand_bbox, for a given centre: cut_rat = sqrt(1 - lam),
    cut_w = int(W * cut_rat), cut_h = int(H * cut_rat), the box (cx +- cut_w // 2, cy +- cut_h
    // 2) clipped to [0, W] x [0, H] (its x/y names swapped for dims 2/3; the same box)."""
    cut = np.sqrt(1.0 - lam)
    cut_w, cut_h = int(w * cut), int(h * cut)
    return (
        int(np.clip(cx - cut_w // 2, 0, w)),
        int(np.clip(cy - cut_h // 2, 0, h)),
        int(np.clip(cx + cut_w // 2, 0, w)),
        int(np.clip(cy + cut_h // 2, 0, h)),
    )


@pytest.mark.parametrize("h,w", [(32, 32), (17, 45), (224, 224)])
def test_rand_box_is_the_references_box(h, w):
    for seed in range(100):
        lam = float(torch.rand((), generator=_gen(1000 + seed)))
        box = rand_box(h, w, lam, _gen(seed))
        g = _gen(seed)  # the centre is drawn x first, then y
        cx, cy = int(torch.randint(w, (), generator=g)), int(torch.randint(h, (), generator=g))
        assert box == _reference_box(h, w, lam, cx, cy), (seed, lam)


def test_lambda_is_beta_distributed_and_defaults_are_the_references():
    from wsol.mixing import _beta

    # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1))
    for a in (1.0, 0.2, 4.0):
        g = _gen(11)
        draws = np.array([_beta(a, g) for _ in range(4000)])
        assert draws.min() >= 0 and draws.max() <= 1
        assert draws.mean() == pytest.approx(0.5, abs=0.02)
        assert draws.var() == pytest.approx(1 / (4 * (2 * a + 1)), rel=0.1)
    images, targets = torch.randn(4, 3, 16, 16), torch.arange(4)
    # config.py / train.py defaults: beta 1.0 (CutMix), alpha 1.0 (Mixup)
    a, b = cutmix(images, targets, generator=_gen(2)), cutmix(images, targets, 1.0, _gen(2))
    assert a.lam == b.lam and torch.equal(a.images, b.images)
    a, b = mixup(images, targets, generator=_gen(2)), mixup(images, targets, 1.0, _gen(2))
    assert a.lam == b.lam and torch.equal(a.images, b.images)
    assert (MixingConfig("cutmix").cutmix_beta, MixingConfig("cutmix").cutmix_prob) == (1.0, 1.0)
    assert MixingConfig("mixup").mixup_alpha == 1.0


def test_cutmix_probability_draws_from_the_generator():
    images, targets = torch.randn(4, 3, 8, 8), torch.arange(4)
    half = MixingConfig("cutmix", cutmix_prob=0.5)
    runs = [[mix_batch(images, targets, half, _gen(s)).lam for s in range(40)] for _ in range(2)]
    assert runs[0] == runs[1]  # reproducible under a seed
    mixed = sum(lam < 1.0 for lam in runs[0])
    assert 8 <= mixed <= 32  # about half the batches


def test_mix_batch_applies_each_method():
    images, targets = torch.rand(4, 3, 8, 8), torch.tensor([3, 1, 2, 0])
    for method in ("mixup", "cutmix"):
        batch = mix_batch(images, targets, MixingConfig(method), _gen(4))
        assert batch.lam < 1.0 and not torch.equal(batch.images, images)
        assert torch.equal(batch.targets_a, targets)
    mixed = mix_batch(images, targets, MixingConfig("mixup"), _gen(4))
    assert torch.equal(mixed.images, mixup(images, targets, 1.0, _gen(4)).images)
    cut = mix_batch(images, targets, MixingConfig("cutout", cutout_size=4), _gen(5))
    assert cut.lam == 1.0 and torch.equal(cut.targets_b, targets)
    assert torch.equal(cut.images, cutout(images, 4, _gen(5)))
    base = mix_batch(images, targets, MixingConfig("base"), _gen(6))
    assert base.lam == 1.0 and base.images is images
    assert base.targets_a is targets and base.targets_b is targets
    never = mix_batch(images, targets, MixingConfig("cutmix", cutmix_prob=0.0), _gen(6))
    assert never.targets_a is targets and never.targets_b is targets
    with pytest.raises(
        ValueError,
        match="unknown method .cutpaste.: acol, adl, base, cutmix, cutout, fsl, has, mixup, sat, spg or tscam",
    ):
        MixingConfig(method="cutpaste")


@pytest.mark.parametrize("h,w,size,side", [(20, 30, 6, 6), (20, 50, 0.5, 10), (9, 9, 4, 4)])
def test_cutout_zeros_exactly_the_drawn_square(h, w, size, side):
    # DeVries & Taylor 2017: a square of the given side at a uniform centre, clipped to the image
    images = torch.rand(32, 3, h, w) + 0.5  # no zero pixel before
    out = cutout(images, size=size, generator=_gen(7))
    g = _gen(7)
    cy, cx = torch.randint(h, (32,), generator=g), torch.randint(w, (32,), generator=g)
    for k in range(32):
        y0, x0 = int(cy[k]) - side // 2, int(cx[k]) - side // 2
        hole = torch.zeros(h, w, dtype=torch.bool)
        hole[max(y0, 0) : max(y0 + side, 0), max(x0, 0) : max(x0 + side, 0)] = True
        assert torch.equal(out[k, 0] == 0, hole), k
        assert torch.equal(out[k][:, ~hole], images[k][:, ~hole])  # the rest untouched
        assert (out[k][:, hole] == 0).all()
    assert out.dtype == images.dtype and out.shape == images.shape


def test_label_smoothing_applies_to_both_label_sets_and_cutout_sizes():
    images, targets = torch.randn(6, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2])
    batch = cutmix(images, targets, generator=_gen(3))
    logits = torch.randn(6, 3)
    want = batch.lam * F.cross_entropy(logits, batch.targets_a, label_smoothing=0.2) + (
        1 - batch.lam
    ) * F.cross_entropy(logits, batch.targets_b, label_smoothing=0.2)
    assert mixed_loss(logits, batch, label_smoothing=0.2).item() == pytest.approx(want.item())
    ones = torch.ones(4, 1, 10, 10)
    assert torch.equal(cutout(ones, generator=_gen(1)), cutout(ones, 0.5, _gen(1)))  # default
    one_pixel = cutout(ones, size=1, generator=_gen(2))  # 1 is a side in pixels, not a fraction
    assert [int((img == 0).sum()) for img in one_pixel] == [1, 1, 1, 1]
    whole = cutout(ones, size=0.999, generator=_gen(2))  # a fraction below 1: ~ the full side
    assert all(int((img == 0).sum()) >= 25 for img in whole)
