"""Self-produced Guidance (Zhang et al., ECCV 2018), as clovaai/wsolevaluation's
``wsol/method/spg.py`` and its ``*Spg`` models define it.

Besides the classifier's class maps (the CAMs), SPG grows three one-channel maps in training:
B1 and B2 on two intermediate backbone outputs (each a 3 x 3 conv + ReLU of its own, then a
shared 3 x 3 conv + ReLU + 1 x 1 conv) and C on the feature map (3 x 3 conv to 512 + ReLU +
1 x 1 conv). Each learns, by binary cross-entropy at the input resolution, a mask made from a
guide map with a high and a low threshold: 1 above the high one (or, when fewer than 30 pixels
pass it, above 0.7 times the guide's maximum), 0 below the low one, ignored in between.

* B2 learns the mask of the normalised class map of the label (thresholds 1h, 1l);
* B1 learns the mask of sigmoid(B2) (2h, 2l);
* C learns the mask of the mean of sigmoid(B1) and sigmoid(B2), both detached (3h, 3l).

The loss is the cross-entropy plus these three. Guides are upsampled bilinearly to the input
size (the reference upsamples to 224 x 224, its crop size). The CAM is the class map of the
class (the reference's ``feat_map[labels]``), which min-max normalisation makes the CAM of
plain training.

Where B1 and B2 read is each backbone's (:meth:`WSOLModel.prepare_spg`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .acol import normalize_maps
from .base import Method, MethodConfig, attach_head, register_method, unit


@dataclass(frozen=True)
class SPGParams(MethodConfig):
    """SPG's (high, low) thresholds of the masks B2, B1 and C learn (config.py's defaults)."""

    method: str = "spg"
    spg_threshold_1h: float = 0.7
    spg_threshold_1l: float = 0.01
    spg_threshold_2h: float = 0.5
    spg_threshold_2l: float = 0.05
    spg_threshold_3h: float = 0.7
    spg_threshold_3l: float = 0.1

    def check(self) -> list[str]:
        errors = []
        for k in (1, 2, 3):
            high, low = getattr(self, f"spg_threshold_{k}h"), getattr(self, f"spg_threshold_{k}l")
            errors += unit(high, f"spg_threshold_{k}h") + unit(low, f"spg_threshold_{k}l")
            if low > high:  # meaningless: the reference's mask_bg would override its mask_fg
                errors.append(
                    f"spg_threshold_{k}l: must be <= method.spg_threshold_{k}h ({high}), not "
                    f"{low} (pixels between them would all be background; the reference's "
                    "mask_bg overrides its mask_fg)"
                )
        return errors


IGNORE = 255.0  # the reference's mask value for pixels between the thresholds
MIN_FOREGROUND = 30  # fewer foreground pixels than this: fall back to 0.7 x the maximum


def guidance_mask(guide: torch.Tensor, high: float, low: float) -> torch.Tensor:
    """SPG's target mask of ``guide`` (B, 1, H, W): 1 foreground, 0 background, 255 ignored.

    Foreground is ``guide > high``, or ``guide > 0.7 * max`` for an image where fewer than 30
    pixels pass ``high``; background (``guide < low``) wins over foreground. Both comparisons
    are strict, as the reference's ``mask_fg`` / ``mask_bg``: a pixel at exactly ``high`` is not
    foreground, one at exactly ``low`` not background (it is ignored). ``low > high`` is refused
    by the config (the reference would make every pixel in between background)."""
    guide = guide.detach()
    count = (guide > high).flatten(1).sum(dim=1)
    top = guide.flatten(1).max(dim=1).values
    thresholds = torch.where(count < MIN_FOREGROUND, top * 0.7, torch.full_like(top, high))
    mask = torch.full_like(guide, IGNORE)
    mask[guide > thresholds.view(-1, 1, 1, 1)] = 1.0
    mask[guide < low] = 0.0
    return mask


def guided_bce(logits: torch.Tensor, guide: torch.Tensor, high: float, low: float) -> torch.Tensor:
    """Binary cross-entropy of ``logits`` (B, 1, H, W) against ``guidance_mask(guide)`` over the
    pixels that are not ignored. A batch whose every pixel is ignored (a constant guide between
    the thresholds) contributes 0, on the graph; the reference's mean over no pixel is NaN,
    which would end the run."""
    mask = guidance_mask(guide, high, low)
    keep = mask != IGNORE
    if not bool(keep.any()):
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[keep].float(), mask[keep].float())


def _upsample(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False)


def spg_loss(
    out: dict,
    targets: torch.Tensor,
    size: tuple[int, int],
    thresholds: tuple[tuple[float, float], ...],
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy plus SPG's three guidance losses (see the module's doc); ``out`` holds
    ``logits``, ``class_map`` (of the label), ``logits_b1``, ``logits_b2`` and ``logits_c``."""
    (h1, l1), (h2, l2), (h3, l3) = thresholds
    b1 = _upsample(out["logits_b1"], size)
    b2 = _upsample(out["logits_b2"], size)
    c = _upsample(out["logits_c"], size)
    attention = normalize_maps(_upsample(out["class_map"].detach(), size))
    fused = (torch.sigmoid(b1.detach()) + torch.sigmoid(b2.detach())) / 2.0
    loss = F.cross_entropy(out["logits"], targets, label_smoothing=label_smoothing)
    loss = loss + guided_bce(b2, attention, h1, l1)
    loss = loss + guided_bce(b1, torch.sigmoid(b2), h2, l2)
    return loss + guided_bce(c, fused, h3, l3)


def _conv_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel_size=3, padding=1), nn.ReLU(inplace=True))


class SpgHead(nn.Module):
    """SPG's branches B1, B2 (with their shared top) and C (the model's ``method_head``). B1 and
    B2 read what forward hooks on the model's two sites hand them in the same forward pass."""

    def __init__(self, layout):
        super().__init__()
        self.b1 = _conv_relu(layout.b1_channels, layout.width)
        self.b2 = _conv_relu(layout.b2_channels, layout.width)
        self.shared = nn.Sequential(
            _conv_relu(layout.width, layout.width), nn.Conv2d(layout.width, 1, kernel_size=1)
        )
        self.c = nn.Sequential(_conv_relu(layout.channels, 512), nn.Conv2d(512, 1, kernel_size=1))
        self._taps: dict[str, torch.Tensor] = {}
        for key, (module, where) in (("b1", layout.b1), ("b2", layout.b2)):
            if where == "input":
                module.register_forward_pre_hook(lambda _m, args, key=key: self._tap(key, args[0]))
            else:
                module.register_forward_hook(lambda _m, _i, out, key=key: self._tap(key, out))

    def _tap(self, key: str, value: torch.Tensor) -> None:
        self._taps[key] = value

    def forward(self, model, features: torch.Tensor, targets: torch.Tensor | None = None) -> dict:
        taps, self._taps = self._taps, {}
        read = model.pre_logit(features)  # InceptionV3: one dropout for the class map and C
        logits = model.classifier(read.mean(dim=(2, 3)))
        if targets is None:
            return {"logits": logits}
        weights = model.classifier.weight[targets].to(read.dtype)
        bias = model.classifier.bias[targets].to(read.dtype)
        class_map = torch.einsum("bc,bchw->bhw", weights, read) + bias.view(-1, 1, 1)
        return {
            "logits": logits,
            "class_map": class_map.unsqueeze(1),
            "logits_b1": self.shared(self.b1(taps["b1"])),
            "logits_b2": self.shared(self.b2(taps["b2"])),
            "logits_c": self.c(read),
        }


@register_method
class SPG(Method):
    name = "spg"
    title = "SPG"
    params = SPGParams
    keeps_classifier = False

    def adapt_model(self, model):
        layout = model.prepare_spg()
        return attach_head(model, SpgHead(layout), layout)

    def thresholds(self) -> tuple[tuple[float, float], ...]:
        c = self.config
        return (
            (c.spg_threshold_1h, c.spg_threshold_1l),
            (c.spg_threshold_2h, c.spg_threshold_2l),
            (c.spg_threshold_3h, c.spg_threshold_3l),
        )

    def training_loss(self, model, batch, label_smoothing: float = 0.0):
        out = model(batch.images, batch.targets_a)
        size = tuple(batch.images.shape[-2:])
        loss = spg_loss(out, batch.targets_a, size, self.thresholds(), label_smoothing)
        return out["logits"], loss


__all__ = ["SPG", "SpgHead", "guidance_mask", "guided_bce", "spg_loss"]
