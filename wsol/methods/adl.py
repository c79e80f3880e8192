"""Attention-based Dropout Layer (Choe & Shim, CVPR 2019), as clovaai/wsolevaluation's
``wsol/method/adl.py`` defines it and at its positions in each backbone.

In training, an ADL layer takes the channel mean of its input as a self-attention map; with
probability ``adl_drop_rate`` (one draw per forward pass) it multiplies the input by the drop
mask (0 where the attention is at least ``adl_threshold`` times its per-image maximum, 1
elsewhere), otherwise by the importance map (the attention's sigmoid). In evaluation it passes
its input through, so CAMs are read as for plain CAM training. ADL has no parameters, so a model
with ADL layers has the same weights (and state-dict keys) as the plain one.

Positions (the reference's): ResNet, after block 0 of layer3 and after the first and last
blocks of layer4; VGG16, after pool3, after conv4_3 and after conv5_3; InceptionV3, after
Mixed_5d, after Mixed_6e and after the head's second conv (whose dropouts the reference's
InceptionAdl does not have). A model names its positions in ``adl_sites()``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import Method, MethodConfig, register_method, unit


@dataclass(frozen=True)
class ADLParams(MethodConfig):
    method: str = "adl"
    adl_drop_rate: float = 0.75  # probability of the drop mask (config.py's default)
    adl_threshold: float = 0.9  # drop where attention >= threshold x max (its default)

    def check(self) -> list[str]:
        return unit(self.adl_drop_rate, "adl_drop_rate") + unit(self.adl_threshold, "adl_threshold")


class ADL(nn.Module):
    """One attention-based dropout layer (identity in eval mode)."""

    def __init__(self, drop_rate: float = 0.75, threshold: float = 0.9):
        super().__init__()
        self.drop_rate, self.threshold = drop_rate, threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        attention = x.mean(dim=1, keepdim=True)
        importance = torch.sigmoid(attention)
        drop = drop_mask(attention, self.threshold)
        # the reference's draw: floor(U[0, 1) + drop_rate) is 1 with probability drop_rate
        use_drop = (torch.rand([], dtype=torch.float32) + self.drop_rate).floor()
        return x.mul((1.0 - use_drop) * importance + use_drop * drop)

    def extra_repr(self) -> str:
        return f"drop_rate={self.drop_rate}, threshold={self.threshold}"


def drop_mask(attention: torch.Tensor, threshold: float) -> torch.Tensor:
    """1 where ``attention`` (B, 1, h, w) is below ``threshold`` times its per-image max."""
    top = attention.flatten(1).max(dim=1).values.view(-1, 1, 1, 1)
    return (attention < top * threshold).float()


@register_method
class ADLMethod(Method):
    name = "adl"
    title = "ADL"
    params = ADLParams

    def adapt_model(self, model):
        """Put an ADL layer after each of the model's ``adl_sites()``, through forward hooks (no
        weight moves, so pretrained weights and checkpoints load unchanged)."""
        sites = model.adl_sites()
        model.adl_layers = nn.ModuleList(
            ADL(self.config.adl_drop_rate, self.config.adl_threshold) for _ in sites
        )
        for site, layer in zip(sites, model.adl_layers):
            site.register_forward_hook(lambda _m, _i, out, layer=layer: layer(out))
        for module in model.modules():  # InceptionAdl has no head dropout
            if isinstance(module, nn.Dropout) and getattr(model, "adl_without_dropout", False):
                module.p = 0.0
        return model
