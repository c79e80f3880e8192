"""Known answers from wpy1999/SAT's own model, as test fixtures.

The script builds the official ``SAT`` (``Model/SAT.py``) at a tiny width: 112 px inputs in 8 px
patches (the 14 x 14 grid its ``forward`` hard-codes), width 32, 12 blocks (its spatial-aware
blocks are ``cur_depth >= 9``: the last 3 of 12) of 2 heads, qkv bias, LayerNorm eps 1e-6 (its
``deit_sat_*`` settings). Every parameter gets deterministic values (:func:`fill_deterministic`,
seeded by the parameter's official name); they are copied by name into our ViT of that shape with
the ``sat`` method. Both run in eval mode, in float64, on a fixed input (in float32 the maps' rounding differs by
up to 1e-4 between two CPUs: seen between the machines of 2026-12-02 and 2026-12-03); the
script checks that they agree
and writes the official answers to ``tests/fixtures/methods/sat.npz``: the logits and the
localization maps of ``phase='test'``, the per-image batch-area and normalization terms of
``phase='train'``, the loss as ``train.py`` sums them (cross-entropy + ``|ba - area_thr|`` +
norm, area_thr 0.25) and the Gaussian kernel (``get_kernel(3, 6)``). ``tests/test_sat.py``
checks our model against them without the official code.

How the committed fixtures were made (2026-12-03; torch 2.14 CPU, timm 1.0.31, whose deprecated
``timm.models.layers`` / ``timm.models.registry`` still serve the official imports; SAT at
702290d)::

    mkdir /tmp/sat && git -C /path/to/SAT archive HEAD Model utils | tar -x -C /tmp/sat
    python scripts/make_sat_fixtures.py --sat /tmp/sat tests/fixtures/methods
"""

from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

NUM_CLASSES = 5
LABELS = (1, 4)
AREA_THR = 0.25
TINY = dict(img_size=112, patch_size=8, embed_dim=32, depth=12, num_heads=2, mlp_ratio=4)


def fixed_input():
    """The (2, 3, 112, 112) float64 input and (2,) labels."""
    import torch

    g = torch.Generator().manual_seed(20261203)
    return torch.randn(2, 3, 112, 112, generator=g).double(), torch.tensor(LABELS)


def fill_deterministic(named_parameters) -> None:
    """Values drawn from a generator seeded by each parameter's (official) name: matrices and
    convs uniform with variance 2 / fan-in (x 4 for the qkv, so that attention is not flat),
    LayerNorm scales 1 + U(-0.1, 0.1), biases U(-0.01, 0.01), tokens and embeddings
    U(-0.5, 0.5)."""
    import torch

    with torch.no_grad():
        for name, tensor in named_parameters:
            g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            u = torch.rand(tensor.shape, generator=g) * 2 - 1
            if name in ("cls_token", "pos_embed", "loc_token", "loc_embed"):
                tensor.copy_(u * 0.5)
            elif tensor.dim() > 1:
                gain = 2.0 if "qkv" in name else 1.0
                tensor.copy_(gain * u * (6.0 / tensor[0].numel()) ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                tensor.copy_(1 + 0.1 * u)
            else:
                tensor.copy_(u * 0.01)


def official_name(ours: str) -> str:
    """The official parameter's name for one of ours."""
    if ours.startswith("method_head.conv."):
        return "head." + ours.removeprefix("method_head.conv.")
    return ours.removeprefix("method_head.").removeprefix("backbone.")


def our_model():
    """(method, model): our ViT of the official shape with the ``sat`` method, filled by the
    official names, in eval mode, in float64 (as the official one here)."""
    from wsol.methods import MethodConfig, create_method
    from wsol.models.vit import ViTWSOL

    method = create_method(MethodConfig("sat", sat_area_thr=AREA_THR))
    model = method.adapt_model(ViTWSOL("vit_tiny_patch16_224", NUM_CLASSES, **TINY))
    fill_deterministic((official_name(n), p) for n, p in model.named_parameters())
    return method, model.double().eval()


def main() -> None:
    import numpy as np
    import torch
    import torch.nn.functional as F

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sat", type=Path, required=True, help="a copy of SAT (Model/, utils/)")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(args.sat))
    from functools import partial

    from Model.SAT import SAT, get_kernel

    official = SAT(qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                   num_classes=NUM_CLASSES, **TINY)  # fmt: skip
    params = dict(official.named_parameters())
    params.pop("weight")  # the Gaussian kernel, fixed
    fill_deterministic(params.items())
    official.double().eval()  # float64: its sigmoid maps carry float32 noise of ~1e-4 across CPUs
    x, y = fixed_input()
    with torch.no_grad():
        logits, maps = official(x, phase="test")
        train_logits, ba, norm = official(x, phase="train")
        loss = F.cross_entropy(train_logits, y) + torch.abs(ba.mean(0) - AREA_THR) + norm.mean(0)
    kernel = official.weight.detach()[0, 0]
    np.testing.assert_allclose(kernel.numpy(), get_kernel(3, 6), rtol=1e-6)

    from wsol.methods import MixedBatch

    method, model = our_model()
    assert {official_name(n) for n, _ in model.named_parameters()} == set(params)
    with torch.no_grad():
        our_logits, features = model.forward_with_features(x)
        our_maps = method.cams(model, features, y)
        _, our_loss = method.training_loss(model, MixedBatch(x, y, y, 1.0))
    print(f"logits max |diff| {float((our_logits - logits).abs().max()):.2e}, maps "
          f"{float((our_maps - maps).abs().max()):.2e}, loss {float(our_loss):.6f} vs "
          f"{float(loss):.6f}; map range {float(maps.min()):.3f}..{float(maps.max()):.3f}")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out / "sat.npz",
        logits=logits.numpy(),
        maps=maps.numpy(),
        batch_area=ba.numpy(),
        norm=norm.numpy(),
        loss=loss.numpy(),
        kernel=kernel.numpy(),
    )
    print(f"wrote {args.out / 'sat.npz'}")


if __name__ == "__main__":
    main()
