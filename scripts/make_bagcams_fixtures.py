"""Known answers from zh460045050/BagCAMs's own ``BagCAMs`` wrapper, as test fixtures.

For each case the script builds one of our models, gives every parameter deterministic values
(:func:`fill_deterministic`: drawn from a generator seeded by the parameter's name), wraps it as
the reference's ``CAMComputer`` expects (an ``extractor`` whose output is the feature map, a 1x1
conv ``classifier`` on the pooled map, with our classifier's weights), and runs the official
``libs/cams/bagcams.py`` on a fixed input: ``forward``, ``backward(ids=labels)`` and
``generate(target_layer)``. The labels alternate the top and the bottom logit of each image, so
that the reference's ``log`` of a negative logit is in the fixtures too. It writes
``tests/fixtures/methods/bagcams.npz``: per case the input's seed and shape, the labels, the
logits and the official maps (normalised, at the input's size). ``tests/test_bagcams.py`` checks
``wsol.cam.bagcams`` against them without the official code.

The official code runs unmodified, with two shims for this environment: ``collections.Sequence``
(gone since Python 3.10; the module imports it and never uses it) and ``Tensor.cuda`` as the
identity (its ``backward`` moves an unused tensor to the GPU). How the committed fixtures were
made (2026-12-02; torch 2.14 CPU; BagCAMs at 0fab958)::

    mkdir /tmp/bagcams && git -C /path/to/BagCAMs archive HEAD libs/cams | tar -x -C /tmp/bagcams
    python scripts/make_bagcams_fixtures.py --bagcams /tmp/bagcams tests/fixtures/methods
"""

from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

NUM_CLASSES = 5
#: name -> (model, input shape, our layer name or None for the feature map)
CASES = {
    "smallcnn": ("smallcnn", (4, 3, 32, 32), None),
    "resnet18": ("resnet18", (2, 3, 64, 64), None),
    "resnet18_layer3": ("resnet18", (2, 3, 64, 64), "backbone.layer3"),
    "resnet18_layer2": ("resnet18", (2, 3, 64, 64), "backbone.layer2"),
    "vit_micro": ("vit_micro", (2, 3, 64, 64), None),
}


def fill_deterministic(named_parameters) -> None:
    """Values from a generator seeded by each parameter's name: matrices and convs uniform with
    variance 2 / fan-in, 1-D weights (norm scales) 1 + U(-0.1, 0.1), biases U(-0.01, 0.01), the
    rest (class token, position embedding) U(-0.02, 0.02)."""
    import torch

    with torch.no_grad():
        for name, tensor in named_parameters:
            g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            u = torch.rand(tensor.shape, generator=g) * 2 - 1
            if tensor.dim() > 1 and not name.endswith(("cls_token", "pos_embed")):
                tensor.copy_(u * (6.0 / tensor[0].numel()) ** 0.5)
            elif name.endswith("weight"):
                tensor.copy_(1 + 0.1 * u)
            elif name.endswith("bias"):
                tensor.copy_(u * 0.01)
            else:
                tensor.copy_(u * 0.02)


def case_model(case: str):
    """Our model of ``case``, filled, in eval mode."""
    from wsol.models import create_model

    model = create_model(CASES[case][0], NUM_CLASSES)
    fill_deterministic(model.named_parameters())
    return model.eval()


def case_input(case: str):
    import torch

    shape = CASES[case][1]
    g = torch.Generator().manual_seed(zlib.crc32(case.encode()))
    return torch.randn(shape, generator=g)


def case_labels(logits):
    """Image i's label: its top logit for even i, its bottom one for odd i."""
    import torch

    top, bottom = logits.argmax(dim=1), logits.argmin(dim=1)
    return torch.where(torch.arange(len(logits)) % 2 == 0, top, bottom)


def _official(bagcams_root: Path):
    import collections
    import collections.abc

    import torch

    collections.Sequence = collections.abc.Sequence  # imported, never used, by the module
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # its backward's unused `phi`
    sys.path.insert(0, str(bagcams_root))
    from libs.cams.bagcams import BagCAMs

    return BagCAMs


def official_maps(bagcams_cls, model, images, labels, layer):
    """The official maps: the extractor is our model up to its feature map, named ``features``
    (so that ``features.<our layer name>`` is the reference's ``target_layer``)."""
    import torch
    from torch import nn

    class Features(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model.forward_features(x)

    class Extractor(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.features = Features(model)

        def forward(self, x):
            return self.features(x)

    weight = model.classifier.weight
    classifier = nn.Conv2d(weight.shape[1], weight.shape[0], 1)
    with torch.no_grad():
        classifier.weight.copy_(weight[:, :, None, None])
        classifier.bias.copy_(model.classifier.bias)
    wrapper = bagcams_cls(Extractor(model), classifier.eval())
    logits, _ = wrapper.forward(images)
    wrapper.backward(ids=labels)
    target = "features" if layer is None else f"features.model.{layer}"
    maps = wrapper.generate(target_layer=target).squeeze(1)
    wrapper.remove_hook()
    return logits.detach(), maps.detach()


def main() -> None:
    import numpy as np
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bagcams", type=Path, required=True, help="a copy of BagCAMs (libs/)")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    bagcams_cls = _official(args.bagcams)
    from wsol.cam import bagcams

    arrays = {}
    for case, (_, _, layer) in CASES.items():
        model, images = case_model(case), case_input(case)
        with torch.no_grad():
            labels = case_labels(model(images))
        logits, maps = official_maps(bagcams_cls, model, images, labels, layer)
        ours = bagcams(case_model(case), images, labels, layer)
        gap = float((ours - maps).abs().max())
        print(
            f"{case}: target logits {logits[torch.arange(len(labels)), labels].tolist()}, "
            f"ours - official max |diff| {gap:.2e}"
        )
        arrays.update(
            {
                f"{case}_labels": labels.numpy(),
                f"{case}_logits": logits.numpy(),
                f"{case}_maps": maps.numpy(),
            }
        )
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / "bagcams.npz", **arrays)
    print(f"wrote {args.out / 'bagcams.npz'}")


if __name__ == "__main__":
    main()
