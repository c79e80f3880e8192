"""CAM extraction from a model: batched, on the model's device, in the classifying forward pass.

``cam`` (Zhou et al. 2016) uses the classifier weights of the class on the last feature map, the
same forward pass that gives the logits. The Grad-CAM family (``gradcam``, ``gradcampp``,
``layercam``, ``scorecam``) comes from the ``grad-cam`` package (pytorch-grad-cam) behind the
same interface, with the model's last feature block as the target layer.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

CAM_METHODS = ("cam", "gradcam", "gradcampp", "layercam", "scorecam")


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """Put the model in eval mode and restore its training flag afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def logits_and_cams(model, images: torch.Tensor, classes: torch.Tensor | None = None, reader=None):
    """(logits (B, K), CAMs (B, h, w) float32) in one forward pass; ``classes`` default to the
    top-1 prediction. ``reader(model, features, classes)`` reads the CAMs (a method's ``cams``
    hook; default: the model's own). Stays on the model's device."""
    logits, features = model.forward_with_features(images)
    if classes is None:
        classes = logits.argmax(dim=1)
    classes = classes.to(logits.device)
    cams = reader(model, features, classes) if reader else model.cams(features, classes)
    return logits, cams.float()


class _FeatureTarget(torch.nn.Module):
    """The module pytorch-grad-cam hooks: the model's feature map (backbone + neck)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_features(x)


class _Wrapped(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.features = _FeatureTarget(model)
        self.model = model

    def forward(self, x):
        features = self.features(x)
        return self.model.logits_from_features(features)


class _ChunkProgress:
    """Stands in for the ``tqdm`` module inside pytorch-grad-cam's Score-CAM: no bar of its own
    (it would draw one per image, also under ``--quiet``); each chunk of masked forward passes
    advances ``bar`` (ours, or none)."""

    def __init__(self, bar):
        self.bar = bar

    def tqdm(self, iterable, *args, **kwargs):
        for item in iterable:
            yield item
            if self.bar is not None:
                self.bar.update(1)


#: masked images per forward pass in Score-CAM
SCORECAM_BATCH = 32


def gradcam_family(
    model, images: torch.Tensor, classes: torch.Tensor, method: str, progress: bool = False
) -> torch.Tensor:
    """CAMs (B, H, W) of ``classes`` with a pytorch-grad-cam method, at the input resolution.

    The model's training flag and hooks are restored afterwards (pytorch-grad-cam's context
    manager releases its hooks). Score-CAM runs one forward pass of the whole network per
    feature channel and image (2,048 per image for ResNet-50): it takes the images one at a
    time, so that its masked copies (channels x 3 x H x W) fit in memory, and with ``progress``
    shows a bar over those forward passes.
    """
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = {
        "gradcam": GradCAM,
        "gradcampp": GradCAMPlusPlus,
        "layercam": LayerCAM,
        "scorecam": ScoreCAM,
    }[method]
    wrapped = _Wrapped(model)
    targets = [ClassifierOutputTarget(int(c)) for c in classes]
    with eval_mode(model), cls(model=wrapped, target_layers=[wrapped.features]) as extractor:
        if method != "scorecam":
            return torch.from_numpy(extractor(input_tensor=images, targets=targets))
        return _scorecam(extractor, wrapped, images, targets, progress)


def _scorecam(extractor, wrapped, images, targets, progress: bool) -> torch.Tensor:
    import pytorch_grad_cam.score_cam as score_cam
    from tqdm import tqdm

    extractor.batch_size = SCORECAM_BATCH
    with torch.no_grad():
        channels = wrapped.features(images[:1]).shape[1]
    chunks = -(-channels // SCORECAM_BATCH) * len(images)
    bar = tqdm(total=chunks, desc="score-cam", unit="chunk", leave=False) if progress else None
    original = score_cam.tqdm
    score_cam.tqdm = _ChunkProgress(bar)
    try:
        cams = [
            extractor(input_tensor=images[k : k + 1], targets=targets[k : k + 1])
            for k in range(len(images))
        ]
    finally:
        score_cam.tqdm = original
        if bar is not None:
            bar.close()
    return torch.from_numpy(np.concatenate(cams))


def extract(
    model,
    images: torch.Tensor,
    classes: torch.Tensor | None = None,
    method: str = "cam",
    reader=None,
    progress: bool = False,
):
    """(logits, CAMs) for any CAM method; CAM CAMs stay at feature resolution on the device,
    Grad-CAM family ones come at input resolution on the CPU. ``reader``: the training method's
    CAM hook (:meth:`wsol.methods.Method.cams`) for ``cam``."""
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}: {', '.join(CAM_METHODS)}")
    with eval_mode(model):
        logits, cams = logits_and_cams(model, images, classes, reader)
    if method == "cam":
        return logits, cams
    if classes is None:
        classes = logits.argmax(dim=1)
    with torch.enable_grad():
        return logits, gradcam_family(model, images, classes.cpu(), method, progress)
