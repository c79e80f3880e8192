"""CAM extraction from a model: batched, on the model's device, in the classifying forward pass.

``cam`` (Zhou et al. 2016) uses the classifier weights of the class on the last feature map, the
same forward pass that gives the logits. The Grad-CAM family (``gradcam``, ``gradcampp``,
``layercam``, ``scorecam``) comes from the ``grad-cam`` package (pytorch-grad-cam) behind the
same interface, with the model's last feature block as the target layer. ``bagcams`` (Zhu et al.,
ECCV 2022) is written here after zh460045050/BagCAMs (``libs/cams/bagcams.py``): it needs hooks
pytorch-grad-cam does not have.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

CAM_METHODS = ("cam", "gradcam", "gradcampp", "layercam", "scorecam", "bagcams")
#: how reports name each CAM method (a layer, ``bagcams@backbone.layer3``, is added after it)
CAM_TITLES = {"cam": "CAM", "gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++",
              "layercam": "LayerCAM", "scorecam": "Score-CAM", "bagcams": "BagCAMs"}  # fmt: skip


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
    model,
    images: torch.Tensor,
    classes: torch.Tensor,
    method: str,
    progress: bool = False,
    layer: str | None = None,
) -> torch.Tensor:
    """CAMs (B, H, W) of ``classes`` with a pytorch-grad-cam method, at the input resolution,
    read at ``layer`` (a module name of ``model``; default: the feature map).

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
    target = wrapped.features if layer is None else target_layer(model, layer)
    with eval_mode(model), cls(model=wrapped, target_layers=[target]) as extractor:
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


def bagcam_maps(features: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """BagCAMs (B, h, w) from a layer's features and the gradients at it (both (B, C, h, w)).

    zh460045050/BagCAMs ``libs/cams/bagcams.py`` ``generate``: every position's regional
    localizer weighs the channels by the image's mean of ``grads * features + 1``; the map is
    ``sum_c relu(mean_hw(g * f + 1) * g * f)``, the ReLU per channel before the sum.
    """
    local = grads * features
    weights = F.adaptive_avg_pool2d(local + 1, 1)  # the reference's order: mean of (g f + 1)
    return torch.relu(weights * local).sum(dim=1)


def _guide_relus(model) -> list:
    """Forward hooks that clamp, in the backward pass, the gradient reaching every ``nn.ReLU``
    module of ``model`` to >= 0, as the backward hooks of BagCAMs' wrapper do on every ReLU
    module of the network (``relu(grad_in)``). Clamping the gradient at the ReLU's output is the
    same: its backward multiplies by the 0/1 mask of its input, which keeps signs."""

    def hook(_module, _inputs, output):
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(torch.relu)

    return [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.ReLU)]


def bagcams(
    model, images: torch.Tensor, classes: torch.Tensor, layer: str | None = None
) -> torch.Tensor:
    """BagCAMs (B, H, W) of ``classes`` (see :func:`logits_and_bagcams`)."""
    return logits_and_bagcams(model, images, classes, layer)[1]


def logits_and_bagcams(
    model, images: torch.Tensor, classes: torch.Tensor | None = None, layer: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (B, K), BagCAMs (B, H, W)) from one forward and one partial backward pass;
    ``classes`` default to the top-1 prediction. The maps are at the input resolution, min-max
    normalised per image (a constant map is all zero), as zh460045050/BagCAMs computes them:

    - the gradient is that of ``log`` of the class's logit (``logits.log().backward(one_hot)``
      in ``bagcams.py``): the logit's gradient divided by the logit itself (a negative logit
      flips its sign, as there);
    - it flows back through every ``nn.ReLU`` module guided (negative gradients cut);
    - it is read at ``layer`` (a module name of ``model``; default: the model's feature map, the
      one CAM and the Grad-CAM family use; the reference's ``--target_layer``) and upsampled
      bilinearly (``align_corners=False``) to the image before the normalisation.

    The model's training flag is restored and its hooks removed afterwards.
    """
    captured = {}
    handles = _guide_relus(model)
    if layer is not None:
        module = target_layer(model, layer)
        handles.append(module.register_forward_hook(lambda _m, _i, out: captured.update(out=out)))
    try:
        with eval_mode(model), torch.enable_grad():
            images = images.detach().requires_grad_(True)  # a graph also under frozen weights
            features = model.forward_features(images)
            logits = model.logits_from_features(features)
            target = captured["out"] if layer is not None else features
            if not isinstance(target, torch.Tensor) or target.dim() != 4:
                shape = tuple(target.shape) if isinstance(target, torch.Tensor) else type(target)
                raise ValueError(
                    f"layer {layer} gives {shape}, not a (B, C, h, w) map: BagCAMs read a "
                    "convolutional map (a vision transformer's is its feature map, the default)"
                )
            if classes is None:
                classes = logits.argmax(dim=1)
            one_hot = torch.zeros_like(logits)
            one_hot[torch.arange(len(logits)), classes.to(logits.device)] = 1.0
            # d log(z) / dz = 1 / z: LogBackward's grad.div(z), here with grad = one_hot
            (grads,) = torch.autograd.grad(logits, target, one_hot.div(logits.detach()))
            maps = bagcam_maps(target.detach(), grads)
    finally:
        for handle in handles:
            handle.remove()
    maps = F.interpolate(maps[:, None], images.shape[-2:], mode="bilinear", align_corners=False)
    flat = maps.flatten(1)
    low, high = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    span = high - low  # NaN where the map has one (a zero logit): all zero, as the reference
    flat = torch.where(span > 0, (flat - low) / span.clamp_min(torch.finfo(flat.dtype).tiny), 0.0)
    return logits.detach(), flat.view(maps.shape[0], *maps.shape[-2:]).float().cpu()


def split_cam_method(method: str) -> tuple[str, str | None]:
    """(name, layer) of a CAM method as the CLI takes it: ``gradcam`` or ``bagcams@backbone.layer3``
    (``@``: a module name of the model, the layer read instead of the feature map; not for
    ``cam``, which is the classifier on the feature map by definition)."""
    name, sep, layer = method.partition("@")
    if name not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {name!r}: {', '.join(CAM_METHODS)}")
    if sep and name == "cam":
        raise ValueError(f"{method}: cam reads the feature map only; a layer is for the others")
    if sep and not layer:
        raise ValueError(f"{method}: name a layer after @, e.g. {name}@backbone.layer3")
    return name, layer or None


def target_layer(model, layer: str) -> torch.nn.Module:
    """The module ``layer`` of ``model``; a ValueError naming the model's layers if none."""
    try:
        return model.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n and n.count(".") < 2]
        raise ValueError(
            f"{type(model).__name__} has no layer {layer!r}; its layers: {', '.join(names)}"
        ) from None


def extract(
    model,
    images: torch.Tensor,
    classes: torch.Tensor | None = None,
    method: str = "cam",
    reader=None,
    progress: bool = False,
):
    """(logits, CAMs) for any CAM method (see :func:`split_cam_method`); CAM CAMs stay at
    feature resolution on the device, Grad-CAM family ones and BagCAMs come at input resolution
    on the CPU. ``reader``: the training method's CAM hook (:meth:`wsol.methods.Method.cams`)
    for ``cam``."""
    name, layer = split_cam_method(method)
    if name == "bagcams":  # its own forward pass gives the logits
        return logits_and_bagcams(model, images, classes, layer)
    if layer is not None:
        target_layer(model, layer)
    with eval_mode(model):
        logits, cams = logits_and_cams(model, images, classes, reader)
    if name == "cam":
        return logits, cams
    if classes is None:
        classes = logits.argmax(dim=1)
    with torch.enable_grad():
        return logits, gradcam_family(model, images, classes.cpu(), name, progress, layer)
