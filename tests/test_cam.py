"""CAM extraction: CAM = the class's classifier weights times the features (Zhou et al. 2016),
and the Grad-CAM family behind the same interface."""

import pytest
import torch

from wsol.cam import extract, logits_and_cams
from wsol.models import create_model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_cam_equals_hand_computation():
    torch.manual_seed(0)
    model = create_model("smallcnn", 3).eval()
    x = torch.randn(2, 3, 32, 32)
    classes = torch.tensor([2, 0])
    logits, cams = logits_and_cams(model, x, classes)
    features = model.backbone(x)  # smallcnn has no neck
    w = model.classifier.weight
    for b in range(2):
        hand = (
            sum(w[classes[b], c] * features[b, c] for c in range(features.shape[1]))
            / features.shape[1]
        )
        torch.testing.assert_close(cams[b], hand, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits, model(x))


@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "layercam", "scorecam"])
def test_gradcam_family_restores_the_model(method):
    torch.manual_seed(0)
    model = create_model("smallcnn", 3).train()
    hooks_before = sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())
    logits, cams = extract(model, torch.randn(2, 3, 32, 32), torch.tensor([0, 1]), method)
    assert cams.shape == (2, 32, 32) and torch.isfinite(cams).all()
    assert model.training  # flag restored
    assert (
        sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules()) == hooks_before
    )
