"""Vision transformers from timm, as WSOL models: the patch tokens are the feature map.

A DeiT is built by ``timm.create_model(name, pretrained=False)`` (nothing is fetched at run
time) and its weights come from a local file the user downloaded (``model.pretrained: PATH``;
the error for a missing file names what to download, from timm's own record of the weights).
``forward_features`` returns the patch tokens after the final norm as a (B, C, h, w) map, so
CAMs, every method on the feature map and the Grad-CAM family (whose target layer is that map:
the token-to-map reshape is part of the model) work as on a CNN. Attention is computed unfused
(timm's ``fused_attn`` off) so that :func:`attention_maps` can read each block's softmax
attention, the class token's included.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from .registry import register_model
from .wsol_model import WSOLModel, init_classifier


class ViTWSOL(WSOLModel):
    """A timm vision transformer; the classifier reads the average of the patch-token map.

    ``timm_name`` names timm's architecture (its pretrained record gives the file to download);
    ``kwargs`` go to ``timm.create_model`` (a tiny ViT's depth and width). ``dynamic_img_size``
    is on: the position embedding is interpolated to the input's patch grid, so a model trained
    at one crop size is evaluated at another as a CNN is."""

    #: ViTs carry no torchvision weights; ``model.pretrained`` names a local file
    torchvision_weights = None

    def __init__(self, timm_name: str, num_classes: int, **kwargs):
        super().__init__()
        import timm

        self.timm_name = timm_name
        self.backbone = timm.create_model(
            timm_name, pretrained=False, num_classes=0, dynamic_img_size=True, **kwargs
        )
        for block in self.backbone.blocks:
            block.attn.fused_attn = False  # attention readable (attention_maps)
            block.attn.attn_drop.register_forward_pre_hook(self._class_attention_hook)
        #: set by a method that reads the class token's attention (TS-CAM): every forward pass
        #: outside training keeps it (:meth:`class_token_attention`)
        self.keep_class_attention = False
        self._class_attention: list[torch.Tensor] | None = None
        self._last_class_attention: tuple[torch.Tensor, torch.Tensor] | None = None
        #: tokens a method appends after the patches (SAT's spatial-aware token): not patches
        self.suffix_tokens = 0
        self.neck = nn.Identity()
        self.classifier = nn.Linear(self.backbone.embed_dim, num_classes)
        init_classifier(self.classifier)

    @property
    def patch_size(self) -> int:
        return self.backbone.patch_embed.patch_size[0]

    def backbone_features(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        if x.shape[-2] % p or x.shape[-1] % p:
            raise ValueError(
                f"{self.timm_name} cuts its input into {p} x {p} patches: an input of "
                f"{x.shape[-2]} x {x.shape[-1]} px is not a whole number of them (set "
                f"data.crop_size to a multiple of {p})"
            )
        keep = self.keep_class_attention and not self.training
        self._class_attention = [] if keep else None
        try:
            tokens = self.backbone.forward_features(x)  # (B, prefix + h * w, C), final norm
        finally:
            collected, self._class_attention = self._class_attention, None
        prefix, end = self.backbone.num_prefix_tokens, tokens.shape[1] - self.suffix_tokens
        patches = tokens[:, prefix:end]
        b, _, c = patches.shape
        h, w = x.shape[-2] // p, x.shape[-1] // p
        features = patches.transpose(1, 2).reshape(b, c, h, w)
        if keep:
            summed = torch.stack(collected).sum(0)[:, prefix:end].reshape(b, h, w)
            self._last_class_attention = (features, summed)
        return features

    def enable_class_attention(self) -> None:
        self.keep_class_attention = True

    def _class_attention_hook(self, _module, args) -> None:
        if self._class_attention is not None:
            # the class token's row of the softmax attention, averaged over the heads: (B, T)
            self._class_attention.append(args[0][:, :, 0, :].mean(dim=1))

    def class_token_attention(self, features: torch.Tensor) -> torch.Tensor:
        """(B, h, w): the class token's attention to each patch, averaged over the heads and
        summed over the blocks (TS-CAM's semantic-agnostic map, vasgaowei/TS-CAM
        lib/models/deit.py), of the forward pass that made ``features`` (which must have run
        outside training with ``keep_class_attention`` on)."""
        last = self._last_class_attention
        if last is None or last[0] is not features:
            raise RuntimeError(
                "no class-token attention recorded for these features: set "
                "model.keep_class_attention and run forward_features in eval mode first"
            )
        return last[1]

    def download_hint(self) -> str:
        """What to download for this architecture's ImageNet weights (timm's record of them)."""
        cfg = getattr(self.backbone, "pretrained_cfg", None) or {}
        where = [s for s in (cfg.get("url"), cfg.get("hf_hub_id")) if s]
        if not where:
            return f"{self.timm_name} has no published weights in timm's record"
        places = " or the Hugging Face hub's ".join(where)
        return f"download {self.timm_name}'s ImageNet weights ({places})"

    def no_weight_decay(self) -> set[str]:
        """Parameters AdamW leaves undecayed beyond biases and norms (timm's own list, and a
        method head's ``no_weight_decay()``)."""
        names = {"backbone." + n for n in self.backbone.no_weight_decay()}
        head = getattr(self, "method_head", None)  # a method's own tokens (SAT's)
        if head is not None and hasattr(head, "no_weight_decay"):
            names |= {"method_head." + n for n in head.no_weight_decay()}
        return names

    def adl_sites(self) -> list[nn.Module]:
        raise ValueError(
            "ADL drops parts of a CNN feature map between conv stages; a vision transformer has "
            "no such stages here (ADL on tokens is not defined by its paper)"
        )

    def prepare_spg(self):
        raise ValueError(
            "SPG's guidance branches read a CNN's intermediate conv stages; a vision transformer "
            "has none here (SPG on tokens is not defined by its paper)"
        )

    @staticmethod
    def rename_torchvision_key(key: str) -> str | None:
        """The keys of a timm / DeiT weight file (``cls_token``, ``blocks.0...``); its ImageNet
        classifier (``head.``, DeiT's distillation ``head_dist.``) is not loaded."""
        if key.startswith(("head.", "head_dist.")):
            return None
        return "backbone." + key


@contextlib.contextmanager
def recorded_attention(model: ViTWSOL):
    """Within the block, each forward pass appends every block's softmax attention (B, heads,
    T, T), before its dropout, to the yielded list (one entry per block, in order)."""
    maps: list[torch.Tensor] = []
    handles = [
        block.attn.attn_drop.register_forward_pre_hook(lambda _m, args: maps.append(args[0]))
        for block in model.backbone.blocks
    ]
    try:
        yield maps
    finally:
        for handle in handles:
            handle.remove()


def attention_maps(model: ViTWSOL, images: torch.Tensor) -> torch.Tensor:
    """Every block's softmax attention on ``images``: (blocks, B, heads, T, T), T = prefix
    tokens + patches; ``[..., 0, prefix:]`` is the class token's attention to the patches."""
    with recorded_attention(model) as maps:
        model.forward_features(images)
    return torch.stack(maps)


@register_model
def deit_tiny(num_classes: int, drop_path_rate: float = 0.0) -> WSOLModel:
    """DeiT-Ti/16 (timm ``deit_tiny_patch16_224``)."""
    return ViTWSOL("deit_tiny_patch16_224", num_classes, drop_path_rate=drop_path_rate)


@register_model
def deit_small(num_classes: int, drop_path_rate: float = 0.0) -> WSOLModel:
    """DeiT-S/16 (timm ``deit_small_patch16_224``), TS-CAM's and SAT's backbone."""
    return ViTWSOL("deit_small_patch16_224", num_classes, drop_path_rate=drop_path_rate)


@register_model
def deit_base(num_classes: int, drop_path_rate: float = 0.0) -> WSOLModel:
    """DeiT-B/16 (timm ``deit_base_patch16_224``)."""
    return ViTWSOL("deit_base_patch16_224", num_classes, drop_path_rate=drop_path_rate)


@register_model
def vit_micro(num_classes: int, drop_path_rate: float = 0.0) -> WSOLModel:
    """A tiny ViT for the CPU (tests, synthetic recipes): 64 px inputs in 8 px patches, width
    64, 3 blocks of 4 heads; not a published architecture."""
    return ViTWSOL(
        "vit_tiny_patch16_224",
        num_classes,
        img_size=64,
        patch_size=8,
        embed_dim=64,
        depth=3,
        num_heads=4,
        drop_path_rate=drop_path_rate,
    )
