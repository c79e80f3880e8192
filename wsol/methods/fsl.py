"""The few-shot learning (FSL) baseline of Choe et al. (CVPR 2020, section 6, "Few-shot learning
baseline"; TPAMI 2022): the full supervision of the ``train-fullsup`` split (our ``val``: 5
images per class on CUB and OpenImages, 10 on ImageNet), which the WSOL methods may only use to
choose hyperparameters, is used to *train* a localizer instead, and it is scored on ``test`` with
the same metrics. Their finding: this beats every WSOL method of their table.

As we read the paper (docs/metrics.md says which parts are checked): the same backbone as the
WSOL models, with one 1 x 1 conv on its feature map giving a single foreground score map; a
per-pixel binary cross-entropy loss against the foreground mask, where the training images'
boxes are filled in as the mask (CUB, ImageNet) or the instance masks are its union
(OpenImages, whose ignore regions are left out of the loss). The score map, upsampled to the
input and passed through a sigmoid, is the "CAM" of every class: the localizer is class-agnostic,
so its classification numbers (top-1, top-1 loc) mean nothing; MaxBoxAcc, MaxBoxAccV2, PxAP and
GT-known loc are what it is scored by.

The model keeps its (untrained, frozen) linear classifier, so that logits have the usual shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import IGNORE  # a target pixel left out of the loss (ignore regions)
from .base import Method, MethodConfig, MixedBatch, attach_head, register_method


@dataclass(frozen=True)
class FSLParams(MethodConfig):
    method: str = "fsl"
    # what its foreground target is made of: boxes, masks or auto (boxes where an image has any,
    # else masks: CUB and ImageNet boxes, OpenImages masks)
    fsl_target: str = "auto"

    def check(self) -> list[str]:
        if self.fsl_target in ("auto", "boxes", "masks"):
            return []
        return [f"fsl_target: must be auto, boxes or masks, not {self.fsl_target!r}"]


class ForegroundHead(nn.Module):
    """One 1 x 1 conv from the feature map to a foreground logit map (the model's
    ``method_head``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.score = nn.Conv2d(channels, 1, kernel_size=1)

    def forward(self, model, features: torch.Tensor, targets: torch.Tensor | None = None) -> dict:
        out = {"logits": model.classify(features)}
        if targets is not None:
            out["foreground"] = self.score(features)
        return out


def foreground_loss(logit_map: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean per-pixel binary cross-entropy of ``logit_map`` (B, 1, h, w), bilinearly upsampled to
    the target's (H, W), against ``target`` (B, H, W) uint8 (1 foreground, 0 background,
    ``IGNORE`` left out). A batch with no pixel to learn from has loss 0 (still on the graph)."""
    up = F.interpolate(logit_map.float(), size=target.shape[-2:], mode="bilinear").squeeze(1)
    keep = target != IGNORE
    if not bool(keep.any()):
        return up.sum() * 0.0
    return F.binary_cross_entropy_with_logits(up[keep], target[keep].float())


def pixel_accuracy(logit_map: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over the batch of each image's fraction of (non-ignored) pixels on the right side of
    0.5: the "correct images" FSL's training log counts."""
    up = F.interpolate(logit_map.float(), size=target.shape[-2:], mode="bilinear").squeeze(1)
    keep = target != IGNORE
    right = ((up > 0) == (target == 1)) & keep
    return (right.flatten(1).sum(1) / keep.flatten(1).sum(1).clamp(min=1)).sum()


@register_method
class FSL(Method):
    """Trains a foreground predictor on the val (train-fullsup) split's boxes or masks."""

    name = "fsl"
    title = "the FSL baseline (trained on the val split's boxes)"
    params = FSLParams
    #: the split it trains on: the fully supervised one
    train_split = "val"
    #: its training batches carry localization masks, not labels
    trains_on_masks = True

    def adapt_model(self, model):
        channels = model.classifier.in_features
        for p in model.classifier.parameters():
            p.requires_grad_(False)  # never trained: FSL does not classify
        head = ForegroundHead(channels)
        layout = _Layout((*model.head_prefixes, "method_head."))
        return attach_head(model, head, layout)

    def prepare_batch(self, images, targets, generator):
        return MixedBatch(images, targets, targets, 1.0)

    def train_dataset(self, split, data):
        from ..data.dataset import LocalizationDataset

        return LocalizationDataset(
            split, data.resize_size, data.crop_size, self.config.fsl_target, data.skip_bad_images
        )

    def check_train_split(self, split) -> None:
        """Every training image has what its target is made of (``fsl_target``)."""
        source = self.config.fsl_target
        what = {"boxes": "box", "masks": "mask"}.get(source, "box or mask")
        for r in split.records:
            has = {"boxes": bool(r.boxes), "masks": bool(r.mask_paths)}
            if not has.get(source, has["boxes"] or has["masks"]):
                raise ValueError(
                    f"method fsl trains on the {split.split} split's localization "
                    f"(method.fsl_target {source}), and image {r.image_id} has no {what}"
                )

    def training_loss(self, model, batch, label_smoothing: float = 0.0):
        out = model(batch.images, batch.targets_a)
        return out["foreground"], foreground_loss(out["foreground"], batch.targets_a)

    def correct(self, logits: torch.Tensor, batch: MixedBatch) -> torch.Tensor:
        return pixel_accuracy(logits.detach(), batch.targets_a)

    def cams(self, model, features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """The foreground probability map (B, h, w), the same for every class."""
        return torch.sigmoid(model.method_head.score(features)).squeeze(1)


class _Layout:
    """What :func:`attach_head` needs: an initialisation and the head-rate prefixes."""

    def __init__(self, head_prefixes: tuple[str, ...]):
        self.head_prefixes = head_prefixes

    @staticmethod
    def init(head: nn.Module) -> None:
        # our choice (the paper does not say): xavier-uniform, bias 0, as the reference starts
        # its other 1 x 1 class-map convs
        nn.init.xavier_uniform_(head.score.weight)
        nn.init.zeros_(head.score.bias)
