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


def _scale(maps, size=None):
    """pytorch-grad-cam's scale_cam_image: per map, minus its min, over (1e-7 + its max),
    then cv2.resize to size (bilinear)."""
    import cv2
    import numpy as np

    out = []
    for m in maps:
        m = m - m.min()
        m = m / (1e-7 + m.max())
        out.append(cv2.resize(m, size) if size is not None else m)
    return np.float32(out)


def test_gradcam_is_the_gradient_weighted_feature_map():
    # Selvaraju et al. 2017 / pytorch-grad-cam GradCAM: weights = spatial mean of d logit_c /
    # d features, CAM = ReLU(sum_k w_k A_k), scaled to [0, 1] and resized to the input
    import numpy as np

    torch.manual_seed(1)
    model = create_model("smallcnn", 3).eval()
    x = torch.randn(2, 3, 32, 32)
    classes = torch.tensor([1, 2])
    features = model.forward_features(x).detach().requires_grad_(True)
    logits = model.classifier(features.mean(dim=(2, 3)))
    logits[torch.arange(2), classes].sum().backward()
    weights = features.grad.mean(dim=(2, 3), keepdim=True)
    hand = torch.relu((weights * features).sum(dim=1)).detach().numpy()
    hand = _scale(np.maximum(_scale(hand, (32, 32)), 0))
    _, cams = extract(model, x, classes, "gradcam")
    np.testing.assert_allclose(cams.numpy(), hand, atol=1e-4)
    # each name is its own method
    others = {m: extract(model, x, classes, m)[1] for m in ("gradcampp", "layercam", "scorecam")}
    for name, other in others.items():
        assert not torch.allclose(other, cams, atol=1e-3), name


def test_extract_defaults_to_the_predicted_class_and_names_unknown_methods():
    torch.manual_seed(2)
    model = create_model("smallcnn", 4).eval()
    x = torch.randn(3, 3, 32, 32)
    logits, cams = extract(model, x)
    _, by_prediction = logits_and_cams(model, x, logits.argmax(dim=1))
    torch.testing.assert_close(cams, by_prediction)
    _, grad_default = extract(model, x, None, "gradcam")
    _, grad_pred = extract(model, x, logits.argmax(dim=1), "gradcam")
    torch.testing.assert_close(grad_default, grad_pred)
    with pytest.raises(ValueError, match="unknown CAM method 'cams': cam, gradcam, gradcampp"):
        extract(model, x, None, "cams")
    model.train()
    extract(model, x, None, "cam")
    assert model.training  # the flag is restored


def test_scorecam_one_image_at_a_time_equals_the_batched_call_and_draws_only_our_bar(capsys):
    # pytorch-grad-cam's ScoreCAM on the whole batch at once (its own tqdm bar per image) gives
    # the same CAMs as ours, one image at a time; ours draws a bar only with progress
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from wsol.cam import _Wrapped, gradcam_family

    torch.manual_seed(2)
    model = create_model("smallcnn", 3).eval()
    x, classes = torch.randn(3, 3, 32, 32), torch.tensor([0, 2, 1])
    wrapped = _Wrapped(model)
    with ScoreCAM(model=wrapped, target_layers=[wrapped.features]) as reference:
        expected = reference(
            input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in classes]
        )
    capsys.readouterr()
    quiet = gradcam_family(model, x, classes, "scorecam", progress=False)
    assert capsys.readouterr().err == ""  # no bar of pytorch-grad-cam's own
    torch.testing.assert_close(quiet, torch.from_numpy(expected), atol=1e-5, rtol=1e-4)
    gradcam_family(model, x, classes, "scorecam", progress=True)
    err = capsys.readouterr().err
    assert "score-cam" in err and "/12 " in err  # 128 channels / 32 per pass x 3 images
