"""Known answers from vasgaowei/TS-CAM's own model, as test fixtures.

The script builds the official ``TSCAM`` (``lib/models/deit.py``, on its own
``vision_transformer.py``) at a tiny size (64 px inputs in 8 px patches, width 64, 3 blocks of 4
heads, qkv bias, LayerNorm eps 1e-6: the shape of our ``vit_micro``), gives every parameter
deterministic values (:func:`fill_deterministic`: drawn from a generator seeded by the
parameter's name, so both models get the same weights whatever their construction order),
copies them by name into our ``vit_micro`` with the ``tscam`` method, runs both in eval mode on
a fixed input, checks that they agree, and writes the official answers to
``tests/fixtures/methods/tscam.npz``: logits, the CAMs of fixed labels (the official
``return_cam`` maps, raw, at the token grid) and the cross-entropy of the logits.
``tests/test_tscam.py`` checks our model against these answers without the official code.

How the committed fixtures were made (2026-12-02; torch 2.14 CPU, timm 1.0.31, whose deprecated
``timm.models.layers`` / ``timm.models.registry`` still serve the official imports)::

    mkdir /tmp/tscam && git -C /path/to/TS-CAM archive HEAD lib | tar -x -C /tmp/tscam
    python scripts/make_tscam_fixtures.py --tscam /tmp/tscam/lib tests/fixtures/methods
"""

from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

NUM_CLASSES = 7
LABELS = (2, 5)
TINY = dict(img_size=64, patch_size=8, embed_dim=64, depth=3, num_heads=4, mlp_ratio=4)


def fixed_input():
    """The (2, 3, 64, 64) input and (2,) labels of every case."""
    import torch

    g = torch.Generator().manual_seed(20261202)
    return torch.randn(2, 3, 64, 64, generator=g), torch.tensor(LABELS)


def fill_deterministic(named_parameters) -> None:
    """Values drawn from a generator seeded by each parameter's (official) name: matrices and
    convs uniform with variance 2 / fan-in, LayerNorm scales 1 + U(-0.1, 0.1), biases and
    shifts U(-0.01, 0.01), the class token and position embedding U(-0.02, 0.02)."""
    import torch

    with torch.no_grad():
        for name, tensor in named_parameters:
            g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            u = torch.rand(tensor.shape, generator=g) * 2 - 1
            if name in ("cls_token", "pos_embed"):
                tensor.copy_(u * 0.02)
            elif tensor.dim() > 1:
                tensor.copy_(u * (6.0 / tensor[0].numel()) ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                tensor.copy_(1 + 0.1 * u)
            else:
                tensor.copy_(u * 0.01)


def official_name(ours: str) -> str:
    """The official model's name of our parameter ``ours``."""
    if ours.startswith("method_head.conv."):
        return "head." + ours.removeprefix("method_head.conv.")
    return ours.removeprefix("backbone.")


def our_model():
    """(method, model): our vit_micro with TS-CAM, the fixtures' weights, in eval mode."""
    from wsol.methods import MethodConfig, create_method
    from wsol.models import create_model

    method = create_method(MethodConfig("tscam"))
    model = method.adapt_model(create_model("vit_micro", NUM_CLASSES))
    fill_deterministic((official_name(n), p) for n, p in model.named_parameters())
    return method, model.eval()


def official_answers(lib: Path) -> dict:
    from functools import partial

    import torch
    import torch.nn.functional as F
    from torch import nn

    sys.path.insert(0, str(lib))
    from models.deit import TSCAM  # the official module

    model = TSCAM(qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
                  num_classes=NUM_CLASSES, **TINY).eval()  # fmt: skip
    fill_deterministic(model.named_parameters())
    x, y = fixed_input()
    with torch.no_grad():
        logits, cams = model(x)
    return {
        "logits": logits.numpy(),
        "cams": cams[torch.arange(len(y)), y].numpy(),  # (B, h, w): each image's label's map
        "loss": F.cross_entropy(logits, y).numpy(),
    }


def main(argv=None) -> None:
    import numpy as np
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tscam", type=Path, required=True, help="TS-CAM's lib/ folder")
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    expected = official_answers(args.tscam)
    method, model = our_model()
    x, y = fixed_input()
    with torch.no_grad():
        logits, features = model.forward_with_features(x)
        cams = method.cams(model, features, y)
    np.testing.assert_allclose(logits.numpy(), expected["logits"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cams.numpy(), expected["cams"], rtol=1e-4, atol=1e-6)
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / "tscam.npz", **expected)
    print(f"wrote {args.out / 'tscam.npz'}: ours agree with the official TS-CAM")


if __name__ == "__main__":
    main()
