"""ACoL and SPG on the three reference backbones against clovaai/wsolevaluation's own models.

The expected logits, CAMs and losses in tests/fixtures/methods/reference.npz come from the
reference's ``ResNetAcol``/``ResNetSpg``, ``VggAcol``/``VggSpg`` and
``InceptionAcol``/``InceptionSpg`` and its ``acol.get_loss`` / ``spg.get_loss``, run on the same
deterministic weights and input (scripts/make_method_fixtures.py says how they were made). The
parameter counts are the reference models' at 200 classes (counted from the same code).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from wsol.methods import MethodConfig, MixedBatch, create_method, normalize_maps
from wsol.models import create_model

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location(
    "make_method_fixtures", ROOT / "scripts" / "make_method_fixtures.py"
)
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)
EXPECTED = np.load(ROOT / "tests" / "fixtures" / "methods" / "reference.npz")

CASES = [(a, m) for a in fixtures.ARCHS for m in fixtures.METHODS]


#: the reference models' parameter counts at 200 classes (counted from its code), and what one
#: class adds: ACoL's two 1 x 1 class convs on 1024 channels; SPG's class map
COUNTS_AT_200 = {
    ("resnet50", "acol"): (80_545_232, 2 * 1025),
    ("resnet50", "spg"): (61_671_690, 2049),
    ("vgg16", "acol"): (43_440_336, 2 * 1025),
    ("vgg16", "spg"): (28_977_162, 513),
    ("inception_v3", "acol"): (42_410_096, 2 * 1025),
    ("inception_v3", "spg"): (37_634_986, 1025),
}


@pytest.mark.parametrize(("arch", "method"), CASES)
def test_matches_the_reference_model(arch, method):
    m, model = fixtures.our_model(arch, method)
    count, per_class = COUNTS_AT_200[(arch, method)]
    expected = count - (200 - fixtures.NUM_CLASSES) * per_class
    assert sum(p.numel() for p in model.parameters()) == expected
    x, y = fixtures.fixed_input()
    with torch.no_grad():
        logits, features = model.forward_with_features(x)
        cams = normalize_maps(m.cams(model, features, y))
        _, loss = m.training_loss(model, MixedBatch(x, y, y, 1.0))
    case = f"{arch}_{method}"
    ref_logits = torch.from_numpy(EXPECTED[f"{case}_logits"])
    scale = ref_logits.abs().max().item()
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-5 * scale)
    torch.testing.assert_close(cams, torch.from_numpy(EXPECTED[f"{case}_cams"]), rtol=0, atol=1e-4)
    assert loss.item() == pytest.approx(float(EXPECTED[f"{case}_loss"]), rel=1e-4)


def _reference_head_rate(arch: str, name: str) -> bool:
    """wsolevaluation main.py's _set_optimizer: whether a parameter (the reference's name) is
    in the classifier group (lr * lr_classifier_ratio)."""
    patterns = {
        "vgg16": ["features."],
        "resnet50": ["layer4.", "fc."],
        "inception_v3": ["Mixed", "Conv2d_1", "Conv2d_2", "Conv2d_3", "Conv2d_4"],
    }[arch]
    hit = any(p in name for p in patterns)
    return hit if arch == "resnet50" else not hit


@pytest.mark.parametrize(("arch", "method"), CASES)
def test_learning_rate_groups_are_the_references(arch, method):
    """ResNet's ACoL/SPG layers learn at lr (their names match neither 'layer4.' nor 'fc.'),
    VGG's SPG conv4/conv5 at the head rate (renamed out of 'features.')."""
    model = create_method(MethodConfig(method)).adapt_model(create_model(arch, 3))
    for name, _ in model.named_parameters():
        theirs = fixtures.reference_key(arch, method, name)
        assert model.is_head_parameter(name) == _reference_head_rate(arch, theirs), name
