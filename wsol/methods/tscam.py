"""TS-CAM (Gao et al., ICCV 2021), as vasgaowei/TS-CAM's ``lib/models/deit.py`` defines it.

A vision transformer's patch tokens, as a (C, h, w) map, go through a 3 x 3 conv to one map per
class (the semantic-aware maps); their spatial mean are the logits, trained with cross-entropy.
At evaluation the CAM of a class is its semantic map times the semantic-agnostic attention map:
the class token's attention to each patch, averaged over the heads and summed over all the
blocks (``attn_weights.mean(2).sum(0)[:, 0, 1:]`` there). The conv keeps PyTorch's default
initialisation: the reference applies its ``_init_weights`` to it, which sets only linear and
LayerNorm layers.

The model must be a vision transformer (``deit_*``, ``vit_micro``); its linear classifier is
removed. TS-CAM has no parameters of its own; its published recipes train every parameter with
one learning rate (AdamW), see configs/.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Method, register_method


class TSCAMHead(nn.Module):
    """The semantic-aware maps: a 3 x 3 conv from the token map to one map per class."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, num_classes, kernel_size=3, stride=1, padding=1)

    def forward(self, model, features: torch.Tensor, targets: torch.Tensor | None = None) -> dict:
        return {"logits": self.conv(features).mean(dim=(2, 3))}

    def cams(self, model, features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """(B, h, w): the semantic map of ``classes`` times the class token's attention."""
        maps = self.conv(features)
        semantic = maps[torch.arange(len(classes), device=maps.device), classes]
        return model.class_token_attention(features).to(semantic.dtype) * semantic


@register_method
class TSCAM(Method):
    name = "tscam"
    title = "TS-CAM"
    keeps_classifier = False

    def adapt_model(self, model):
        model.enable_class_attention()  # a CNN refuses with a sentence
        channels, num_classes = model.classifier.in_features, model.classifier.out_features
        model.classifier = None
        model.method_head = TSCAMHead(channels, num_classes)
        model.head_prefixes = (*model.head_prefixes, "method_head.")
        return model

    def cams(self, model, features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return model.method_head.cams(model, features, classes)
