"""Known answers from clovaai/wsolevaluation's ACoL and SPG models, as test fixtures.

For each backbone (resnet50, vgg16, inception_v3) and method (acol, spg), the script builds our
model with deterministic weights (:func:`fill_deterministic`: every tensor drawn from a
generator seeded by its name, so the weights do not depend on construction order), copies them
by name into the reference's ``*Acol`` / ``*Spg`` model, runs both in eval mode on a fixed
input with fixed labels, checks that they agree, and writes the reference's answers to
``tests/fixtures/methods/reference.npz``: logits, CAMs of the labels (min-max normalised, as
every CAM is before evaluation) and the training loss (``acol.get_loss`` /
``spg.get_loss`` with the default thresholds) of the eval-mode outputs.
``tests/test_reference_methods.py`` checks our models against these answers without the
reference.

How the committed fixtures were made (2026-11-25; torch 2.x CPU; the reference's ``wsol``
package from clovaai/wsolevaluation's default branch)::

    mkdir /tmp/ref && git -C /path/to/wsolevaluation archive HEAD wsol | tar -x -C /tmp/ref
    python scripts/make_method_fixtures.py --wsolevaluation /tmp/ref tests/fixtures/methods
"""

from __future__ import annotations

import argparse
import re
import sys
import zlib
from pathlib import Path

NUM_CLASSES = 7
LABELS = (2, 5)
ARCHS = ("resnet50", "vgg16", "inception_v3")
METHODS = ("acol", "spg")
SPG_THRESHOLDS = ((0.7, 0.01), (0.5, 0.05), (0.7, 0.1))  # wsolevaluation config.py defaults


def fixed_input():
    """The (2, 3, 224, 224) input and (2,) labels of every case."""
    import torch

    g = torch.Generator().manual_seed(20261125)
    return torch.randn(2, 3, 224, 224, generator=g), torch.tensor(LABELS)


def fill_deterministic(model) -> None:
    """Give every parameter of ``model`` values drawn from a generator seeded by its name:
    weights uniform with variance 2 / fan-in (activations keep their scale through deep nets),
    biases and BatchNorm shifts small, BatchNorm scales 1; running means 0, variances 1."""
    import torch
    from torch import nn

    with torch.no_grad():
        for prefix, module in model.named_modules():
            for name, tensor in module.named_parameters(prefix=prefix, recurse=False):
                g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
                u = torch.rand(tensor.shape, generator=g) * 2 - 1
                if isinstance(module, nn.BatchNorm2d) and name.endswith("weight"):
                    tensor.fill_(1.0)
                elif tensor.dim() > 1:
                    tensor.copy_(u * (6.0 / tensor[0].numel()) ** 0.5)
                else:
                    tensor.copy_(u * 0.01)
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.zero_()
                module.running_var.fill_(1.0)


def reference_key(arch: str, method: str, ours: str) -> str:
    """The reference model's name of our parameter ``ours``."""
    n = ours
    if arch == "resnet50":
        n = n.removeprefix("backbone.")
        m = re.match(r"layer3\.(\d+)\.(.*)", n)
        if method == "spg" and m:
            i = int(m.group(1))
            n = f"SPG_A1.0.{m.group(2)}" if i == 0 else f"SPG_A2.{i - 1}.{m.group(2)}"
        n = n.replace("classifier.", "SPG_A4.")
    elif arch == "vgg16":
        m = re.match(r"backbone\.(\d+)\.(.*)", n)
        spg_convs = {17: "SPG_A_1.0", 19: "SPG_A_1.2", 21: "SPG_A_1.4"}
        spg_convs.update({24: "SPG_A_2.0", 26: "SPG_A_2.2", 28: "SPG_A_2.4"})
        if m:
            i = int(m.group(1))
            layer = spg_convs.get(i) if method == "spg" else None
            n = f"{layer or f'features.{i}'}.{m.group(2)}"
        n = n.replace("neck.", "SPG_A_3.").replace("classifier.", "SPG_A_4.")
    else:
        n = n.removeprefix("backbone.")
        n = n.replace("neck.1.", "SPG_A3_1b.0.").replace("neck.4.", "SPG_A3_2b.0.")
        n = n.replace("classifier.", "SPG_A4.")
    for ours_part, theirs in (
        ("method_head.branch_a.", "classifier_A."),
        ("method_head.branch_b.", "classifier_B."),
        ("method_head.b1.0.", "SPG_B_1a.0."),
        ("method_head.b2.0.", "SPG_B_2a.0."),
        ("method_head.shared.0.0.", "SPG_B_shared.0."),
        ("method_head.shared.1.", "SPG_B_shared.2."),
        ("method_head.c.0.0.", "SPG_C.0."),
        ("method_head.c.1.", "SPG_C.2."),
    ):
        n = n.replace(ours_part, theirs)
    return n


def our_model(arch: str, method: str):
    from wsol.methods import MethodConfig, create_method
    from wsol.models import create_model

    m = create_method(MethodConfig(method))
    model = m.adapt_model(create_model(arch, NUM_CLASSES))
    fill_deterministic(model)
    return m, model.eval()


def normalized(cams):
    from wsol.methods import normalize_maps

    return normalize_maps(cams.float())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="fixture folder (tests/fixtures/methods)")
    parser.add_argument("--wsolevaluation", type=Path, required=True, help="holds its wsol/")
    args = parser.parse_args(argv)
    import numpy as np
    import torch

    sys.path.insert(0, str(args.wsolevaluation))
    from wsol.method import acol as ref_acol
    from wsol.method import spg as ref_spg

    import wsol as reference  # the reference's package, not ours

    sys.path.pop(0)
    for key in [k for k in sys.modules if k == "wsol" or k.startswith("wsol.")]:
        sys.modules["_reference_" + key] = sys.modules.pop(key)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

    x, y = fixed_input()
    answers = {}
    for arch in ARCHS:
        for method in METHODS:
            ours_method, ours = our_model(arch, method)
            ref = reference.__dict__[arch](
                architecture_type=method,
                num_classes=NUM_CLASSES,
                large_feature_map=False,
                pretrained=False,
                dataset_name="CUB",
                adl_drop_rate=0.75,
                adl_drop_threshold=0.9,
                acol_drop_threshold=0.7,
            )
            theirs = ref.state_dict()
            state = {}
            for key, value in ours.state_dict().items():
                name = reference_key(arch, method, key)
                state[name] = value.view(theirs[name].shape)  # a class map: linear -> 1 x 1 conv
            ref.load_state_dict(state, strict=True)
            ref.eval()
            with torch.no_grad():
                out = ref(x, y)
                cams = ref(x, y, return_cam=True)
                if method == "acol":
                    loss = ref_acol.get_loss(out, y)
                else:
                    loss = ref_spg.get_loss(out, y, spg_thresholds=SPG_THRESHOLDS)
            case = f"{arch}_{method}"
            answers[f"{case}_logits"] = out["logits"].numpy()
            answers[f"{case}_cams"] = normalized(cams).numpy()
            answers[f"{case}_loss"] = np.float64(loss.item())
            print(case, "loss", loss.item(), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / "reference.npz", **answers)


if __name__ == "__main__":
    main()
