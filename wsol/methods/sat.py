"""SAT, the spatial-aware token (Wu et al., ICCV 2023), as wpy1999/SAT's ``Model/SAT.py`` and
``train.py`` define it.

A learned token (the spatial-aware token, with its own position embedding) is appended after a
vision transformer's patch tokens. In each of the last ``sat_blocks`` blocks (3: the reference's
``cur_depth >= 9`` of DeiT's 12), the token's row of the attention logits, averaged over the
heads and squashed by a sigmoid, is a foreground probability per token; it multiplies the
softmax attention of every query (column-wise) before the values are read. The localization map
is that probability at the patches, averaged over those blocks; it is the same for every class.
The class logits are the spatial mean of a 3 x 3 conv over the patch-token map (as TS-CAM's).
Training adds two spatial constraints to the cross-entropy (``train.py``):

- the batch area loss ``|mean over the batch and the patches of the map - sat_area_thr|``
  (``--area_thr`` 0.25);
- the normalization loss ``mean((1 - m) * m)`` of the map smoothed by a 3 x 3 Gaussian
  (``get_kernel(3, 6)``), which pushes each patch towards 0 or 1.

The reference hard-codes the 14 x 14 patch grid of 224 px inputs; here the grid is the input's.
The model must be a vision transformer (``deit_*``, ``vit_micro``); its linear classifier is
removed. On ``vit_micro`` (3 blocks) every block is spatial-aware at the default.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import Method, MethodConfig, register_method, unit


@dataclass(frozen=True)
class SATParams(MethodConfig):
    """SAT's parameters (wpy1999/SAT's defaults)."""

    method: str = "sat"
    sat_area_thr: float = 0.25  # train.py --area_thr: the batch's target foreground fraction
    sat_blocks: int = 3  # the last blocks that are spatial-aware (SAT.py: cur_depth >= 9 of 12)

    def check(self) -> list[str]:
        errors = unit(self.sat_area_thr, "sat_area_thr")
        if self.sat_blocks < 1:
            errors.append(f"sat_blocks: must be at least 1, not {self.sat_blocks!r}")
        return errors


def gaussian_kernel(size: int = 3, nsig: float = 6.0) -> torch.Tensor:
    """(size, size) kernel: the reference's ``get_kernel``, the square root of the outer
    product of a normal's probability mass over ``size`` equal bins of [-nsig - d/2,
    nsig + d/2], d = (2 nsig + 1) / size, divided by its sum."""
    interval = (2 * nsig + 1.0) / size
    edges = torch.linspace(-nsig - interval / 2, nsig + interval / 2, size + 1, dtype=torch.float64)
    cdf = 0.5 * (1 + torch.erf(edges / math.sqrt(2)))
    mass = cdf[1:] - cdf[:-1]
    kernel = torch.sqrt(torch.outer(mass, mass))
    return (kernel / kernel.sum()).float()


def batch_area_loss(maps: torch.Tensor, area_thr: float) -> torch.Tensor:
    """``|mean_b mean_hw maps - area_thr|`` of maps (B, h, w) (train.py: ``ba_loss``)."""
    return (maps.flatten(1).mean(1).mean(0) - area_thr).abs()


def normalization_loss(maps: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``mean((1 - s) s)`` of the maps (B, h, w) smoothed by ``kernel`` (zero padding)."""
    smooth = F.conv2d(maps[:, None], kernel.to(maps)[None, None], padding=kernel.shape[-1] // 2)
    return ((1 - smooth) * smooth).flatten(1).mean(1).mean(0)


_KERNEL = gaussian_kernel()  # SAT.py: get_kernel(kernlen=3, nsig=6)


def _spatial_attention(attn, x, attn_mask=None, is_causal=False, *, head, aware: bool):
    """timm's ``Attention.forward`` (unfused) with SAT's spatial query: the last token's
    attention logits, averaged over the heads, through a sigmoid (B, 1, 1, N); in a
    spatial-aware block it multiplies the softmax attention and is recorded."""
    if attn_mask is not None or is_causal:
        raise ValueError("SAT's attention takes no attention mask")
    b, n, _ = x.shape
    qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    logits = (q @ k.transpose(-2, -1)) * attn.scale  # SAT.py's order: scaled after the product
    weights = logits.softmax(dim=-1)
    if aware:  # (SAT.py computes the mask in every block and reads only these)
        mask = torch.sigmoid(logits[:, :, -1, :].mean(1))[:, None, None, :]
        weights = weights * mask
        head.record(mask)
    weights = attn.attn_drop(weights)
    out = (weights @ v).transpose(1, 2).reshape(b, n, attn.attn_dim)
    return attn.proj_drop(attn.proj(attn.norm(out)))


class SATHead(nn.Module):
    """The spatial-aware token and its position embedding, the 3 x 3 conv of the class maps,
    and the localization map of the last forward pass."""

    def __init__(self, channels: int, num_classes: int, prefix_tokens: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, num_classes, kernel_size=3, stride=1, padding=1)
        self.loc_token = nn.Parameter(torch.zeros(1, 1, channels))
        self.loc_embed = nn.Parameter(torch.zeros(1, 1, channels))
        nn.init.trunc_normal_(self.loc_token, std=0.02, a=-2.0, b=2.0)  # timm's trunc_normal_
        nn.init.trunc_normal_(self.loc_embed, std=0.02, a=-2.0, b=2.0)
        self._masks: list[torch.Tensor] = []
        self.prefix_tokens = prefix_tokens  # the class token(s) before the patches

    def no_weight_decay(self) -> set[str]:
        """SAT.py's ``no_weight_decay`` names its two tokens beside timm's."""
        return {"loc_token", "loc_embed"}

    def record(self, mask: torch.Tensor) -> None:
        self._masks.append(mask)

    def append_token(self, tokens: torch.Tensor) -> torch.Tensor:
        """The tokens after the position embedding, with the spatial-aware token last; a new
        forward pass starts recording its maps."""
        self._masks = []
        loc = (self.loc_token + self.loc_embed).expand(tokens.shape[0], -1, -1)
        return torch.cat([tokens, loc.to(tokens.dtype)], dim=1)

    def spatial_map(self, features: torch.Tensor) -> torch.Tensor:
        """(B, h, w): the foreground probability of each patch, averaged over the
        spatial-aware blocks of the forward pass that made ``features`` (B, C, h, w)."""
        b, _, h, w = features.shape
        if not self._masks or self._masks[0].shape[-1] != self.prefix_tokens + h * w + 1:
            raise RuntimeError("no SAT maps recorded for these features: run the model first")
        masks = torch.stack(self._masks)[..., self.prefix_tokens : -1]  # (L, B, 1, 1, h * w)
        return masks.mean(dim=0).reshape(b, h, w)

    def forward(self, model, features: torch.Tensor, targets: torch.Tensor | None = None) -> dict:
        out = {"logits": self.conv(features).mean(dim=(2, 3))}
        if targets is not None:
            out["spatial"] = self.spatial_map(features)
        return out

    def cams(self, model, features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return self.spatial_map(features).float()


@register_method
class SAT(Method):
    name = "sat"
    title = "SAT"
    params = SATParams
    keeps_classifier = False

    def adapt_model(self, model):
        backbone = getattr(model, "backbone", None)
        if not hasattr(model, "suffix_tokens") or not hasattr(backbone, "blocks"):
            raise ValueError(
                f"SAT adds a token to a vision transformer's tokens: {type(model).__name__} is "
                "not one (use model.name deit_small, deit_base or vit_micro)"
            )
        if getattr(model, "method_head", None) is not None or model.suffix_tokens:
            raise ValueError("SAT's token is added once, to a model without a method head")
        blocks = len(backbone.blocks)
        if self.config.sat_blocks > blocks:
            raise ValueError(
                f"sat_blocks {self.config.sat_blocks} is more than the model's {blocks} blocks"
            )
        channels, num_classes = model.classifier.in_features, model.classifier.out_features
        head = SATHead(channels, num_classes, backbone.num_prefix_tokens)
        first = blocks - self.config.sat_blocks
        for index, block in enumerate(backbone.blocks):
            block.attn.forward = functools.partial(
                _spatial_attention, block.attn, head=head, aware=index >= first
            )
        position = backbone._pos_embed
        backbone._pos_embed = lambda x: head.append_token(position(x))
        model.suffix_tokens = 1
        model.classifier = None
        model.method_head = head
        model.head_prefixes = (*model.head_prefixes, "method_head.")
        return model

    def training_loss(self, model, batch, label_smoothing: float = 0.0):
        out = model(batch.images, batch.targets_a)
        maps = out["spatial"]
        ce = F.cross_entropy(out["logits"], batch.targets_a, label_smoothing=label_smoothing)
        area = batch_area_loss(maps, self.config.sat_area_thr)
        return out["logits"], ce + area + normalization_loss(maps, _KERNEL)

    def cams(self, model, features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return model.method_head.cams(model, features, classes)
