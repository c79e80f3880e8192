"""The registered WSOL backbones.

The three reference backbones follow clovaai/wsolevaluation (``wsol/resnet.py``, ``vgg.py``,
``inception.py``: the ``cam`` architecture type), including which layers learn at the head rate
(its ``main.py``) and how new layers are initialised:

* ``resnet50``: ResNet-50 with layer4 at stride 1 (14 x 14 features at 224 px), GAP, linear;
  ``large_feature_map=True`` also sets layer3 to stride 1 (28 x 28). Head rate: layer4 and the
  classifier. The ImageNet classifier can be kept (``keep_pretrained_classifier``), as the
  reference does for ILSVRC.
* ``vgg16``: VGG16-GAP: VGG16's conv layers without the last max-pool (14 x 14 at 224 px;
  ``large_feature_map=True`` drops pool4 too: 28 x 28), a new 3 x 3 conv to 1024 channels + ReLU,
  GAP, linear (the reference's ``VggCam``). Head rate: everything after the conv layers.
* ``inception_v3``: the reference's modified InceptionV3: padding 1 on the first conv and the
  two stem pools (ceil mode), a stride-2 pool after Mixed_5d (left out with
  ``large_feature_map``), Mixed_6a at stride 1, then up to Mixed_6e (14 x 14 at 224 px, 28 x 28
  with the large map); head: dropout 0.5, 3 x 3 conv 1024 + ReLU, dropout, 3 x 3 conv 1024 +
  ReLU, dropout, class map (the reference's 1 x 1 conv, here the linear classifier on the
  pooled map: the same function). 25,687,976 parameters at 200 classes. Head rate: everything
  but the Conv2d_* and Mixed_* layers.
* ``resnet18``: ResNet-18 with layer4 at stride 1 (the ``resnet50`` rules): a light model.
* ``smallcnn``: six conv layers, for CPU runs on the synthetic set (seconds per epoch).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model
from .wsol_model import (
    AcolLayout,
    SpgLayout,
    WSOLModel,
    he_init,
    init_class_map,
    init_classifier,
    init_reference_weights,
    xavier_init,
)

if TYPE_CHECKING:
    from torchvision.models import ResNet

# torchvision is imported where a backbone is built, not with this module: importing it costs
# about 1.5 s (it imports torch._dynamo), which commands that only read configs and results
# (wsol compare, the parent process of wsol sweep) need not pay


def _tvm():
    from torchvision import models

    return models


def _stride1(layer: nn.Sequential) -> None:
    block = layer[0]
    # torchvision puts a Bottleneck's stride in conv2 and a BasicBlock's in conv1
    conv = block.conv2 if isinstance(block, _tvm().resnet.Bottleneck) else block.conv1
    conv.stride = (1, 1)
    block.downsample[0].stride = (1, 1)


class ResNetWSOL(WSOLModel):
    # wsolevaluation main.py: for resnet, 'layer4.' and 'fc.' learn at lr * lr_classifier_ratio
    head_prefixes = ("backbone.layer4.", "neck.", "classifier.")
    torchvision_classifier_keys = (
        ("fc.weight", "classifier.weight"),
        ("fc.bias", "classifier.bias"),
    )

    def __init__(
        self, resnet: ResNet, num_classes: int, weights: str, large_feature_map: bool = False
    ):
        super().__init__()
        _stride1(resnet.layer4)
        if large_feature_map:
            _stride1(resnet.layer3)
        resnet.fc = nn.Identity()
        self.backbone = resnet
        self.neck = nn.Identity()
        self.classifier = nn.Linear(resnet.layer4[-1].conv1.in_channels, num_classes)
        init_reference_weights(self, "xavier")  # ResNetCam: initialize_weights(..., 'xavier')
        self.torchvision_weights = weights

    def adl_sites(self):
        # wsolevaluation resnet.py _ADL_POSITION [[], [], [], [0], [0, 2]]: after block 0 of
        # layer3 and after blocks 0 and 2 (the last) of layer4
        b = self.backbone
        return [b.layer3[0], b.layer4[0], b.layer4[-1]]

    def prepare_acol(self):
        # wsolevaluation resnet.py ResNetAcol: branches on layer4 (2048 -> 1024 -> 1024 -> K),
        # initialize_weights 'he'; main.py's grouping ('layer4.', 'fc.') leaves them at lr
        channels = self.classifier.in_features
        return AcolLayout(nn.Identity(), channels, channels // 2, he_init, ("backbone.layer4.",))

    def prepare_spg(self):
        # wsolevaluation resnet.py ResNetSpg: B1 after layer3's first block (SPG_A1), B2 after
        # layer3 (SPG_A2), 1024 wide; the class map (SPG_A4) and the branches at lr, as main.py
        # groups them ('layer4.', 'fc.' at the head rate)
        b = self.backbone
        width = b.layer3[-1].conv1.in_channels
        init_class_map(self.classifier)
        return SpgLayout(
            (b.layer3[0], "output"),
            width,
            (b.layer3, "output"),
            width,
            width,
            self.classifier.in_features,
            ("backbone.layer4.",),
            xavier_init,
        )

    def backbone_features(self, x):
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        return b.layer4(b.layer3(b.layer2(b.layer1(x))))

    @staticmethod
    def rename_torchvision_key(key):
        return None if key.startswith("fc.") else "backbone." + key


@register_model
def resnet50(num_classes: int, large_feature_map: bool = False) -> WSOLModel:
    return ResNetWSOL(
        _tvm().resnet50(weights=None),
        num_classes,
        "ResNet50_Weights.IMAGENET1K_V1",
        large_feature_map,
    )


@register_model
def resnet18(num_classes: int, large_feature_map: bool = False) -> WSOLModel:
    return ResNetWSOL(
        _tvm().resnet18(weights=None),
        num_classes,
        "ResNet18_Weights.IMAGENET1K_V1",
        large_feature_map,
    )


class VGGWSOL(WSOLModel):
    def __init__(self, num_classes: int, large_feature_map: bool = False):
        super().__init__()
        # torchvision's VGG16 conv layers (its "D" layout; the same indices and weight keys as
        # vgg16().features) without pool5, built without its 120 M-parameter classifier
        vgg = _tvm().vgg
        features = vgg.make_layers(vgg.cfgs["D"])[:30]
        if large_feature_map:  # without pool4 too; conv indices (and weight keys) stay as they are
            features[23] = nn.Identity()
        self.backbone = features
        self.neck = nn.Sequential(
            nn.Conv2d(512, 1024, kernel_size=3, padding=1), nn.ReLU(inplace=True)
        )
        self.classifier = nn.Linear(1024, num_classes)
        init_reference_weights(self, "he")  # VggCam: initialize_weights(..., 'he')
        self.torchvision_weights = "VGG16_Weights.IMAGENET1K_V1"

    @staticmethod
    def rename_torchvision_key(key):
        return "backbone." + key.removeprefix("features.") if key.startswith("features.") else None

    def prepare_acol(self):
        # wsolevaluation vgg.py configs_dict['acol']: every max-pool 3 x 3 / stride 2 / pad 1
        # (pool4 at stride 1 with the large map), a 3 x 3 stride-1 max-pool after conv5_3, then
        # VggAcol's 3 x 3 stride-1 average pool; branches 512 -> 1024 -> 1024 -> K, xavier;
        # everything but the conv layers at the head rate (main.py)
        large = isinstance(self.backbone[23], nn.Identity)
        for i in (4, 9, 16, 23):
            stride = 1 if i == 23 and large else 2
            self.backbone[i] = nn.MaxPool2d(kernel_size=3, stride=stride, padding=1)
        neck = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
            nn.AvgPool2d(kernel_size=3, stride=1, padding=1),
        )
        return AcolLayout(neck, 512, 1024, xavier_init, ("neck.", "method_head."))

    def prepare_spg(self):
        # wsolevaluation vgg.py VggSpg: conv4 (SPG_A_1), then a 3 x 3 / stride 2 / pad 1 max-pool
        # (none with the large map), B1; conv5 (SPG_A_2), B2; two new 3 x 3 convs 512 -> 512
        # (SPG_A_3) instead of conv6, the class map on them; all 512 wide, xavier. main.py puts
        # every parameter outside 'features.' at the head rate: VggSpg renames conv4 and conv5
        # out of it, so they learn at the head rate too.
        if not isinstance(self.backbone[23], nn.Identity):
            self.backbone[23] = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.neck = nn.Sequential(
            nn.Conv2d(512, 512, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(512, 512, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(512, self.classifier.out_features)
        init_reference_weights(self.neck, "xavier")
        init_class_map(self.classifier)
        conv45 = tuple(f"backbone.{i}." for i in (17, 19, 21, 24, 26, 28))
        return SpgLayout(
            (self.backbone[23], "output"),
            512,
            (self.backbone[29], "output"),
            512,
            512,
            512,
            ("neck.", "classifier.", "method_head.", *conv45),
            xavier_init,
        )

    def adl_sites(self):
        # wsolevaluation vgg.py configs_dict['adl']: 'A' after pool3, after conv4_3 (+ ReLU) and
        # after conv5_3 (+ ReLU); in torchvision's numbering features[16], [22] and [29]
        return [self.backbone[16], self.backbone[22], self.backbone[29]]


@register_model
def vgg16(num_classes: int, large_feature_map: bool = False) -> WSOLModel:
    return VGGWSOL(num_classes, large_feature_map)


class _InceptionTrunk(nn.Module):
    """InceptionV3 from the input to Mixed_6e, as the reference's ``InceptionCam`` runs it.

    The layers keep torchvision's names and shapes (so its ImageNet weights load by name); what
    differs from torchvision is padding and stride: Conv2d_1a pads 1, the stem pools pad 1 in
    ceil mode, Mixed_6a runs at stride 1 (padding 1, its pool too) and a stride-2 pool before it
    sets the scale (dropped with ``large_feature_map``)."""

    def __init__(self, large_feature_map: bool = False):
        super().__init__()
        inception = _tvm().inception
        conv = inception.BasicConv2d
        self.large_feature_map = large_feature_map
        self.Conv2d_1a_3x3 = conv(3, 32, kernel_size=3, stride=2, padding=1)
        self.Conv2d_2a_3x3 = conv(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = conv(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = conv(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = conv(80, 192, kernel_size=3)
        self.Mixed_5b = inception.InceptionA(192, pool_features=32)
        self.Mixed_5c = inception.InceptionA(256, pool_features=64)
        self.Mixed_5d = inception.InceptionA(288, pool_features=64)
        self.Mixed_6a = _inception_b_stride1()(288)
        self.Mixed_6b = inception.InceptionC(768, channels_7x7=128)
        self.Mixed_6c = inception.InceptionC(768, channels_7x7=160)
        self.Mixed_6d = inception.InceptionC(768, channels_7x7=160)
        self.Mixed_6e = inception.InceptionC(768, channels_7x7=192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1, ceil_mode=True)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1, ceil_mode=True)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))
        if not self.large_feature_map:
            x = F.max_pool2d(x, kernel_size=3, stride=2, ceil_mode=True)
        x = self.Mixed_6a(x)
        return self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))


@functools.cache
def _inception_b_stride1() -> type[nn.Module]:
    """torchvision's InceptionB (Mixed_6a) at stride 1 with padding 1 in every spatial branch,
    as the reference's ``InceptionB(288, kernel_size=3, stride=1, padding=1)`` (the class is
    made on first use, with torchvision)."""

    class _InceptionBStride1(_tvm().inception.InceptionB):
        def __init__(self, in_channels: int):
            super().__init__(in_channels)
            for block in (self.branch3x3, self.branch3x3dbl_3):
                block.conv.stride, block.conv.padding = (1, 1), (1, 1)

        def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            branch3x3 = self.branch3x3(x)
            branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            branch_pool = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
            return [branch3x3, branch3x3dbl, branch_pool]

    _InceptionBStride1.__qualname__ = "_InceptionBStride1"  # pickled by its module-level name
    return _InceptionBStride1


def __getattr__(name: str):
    """The module's lazily made class (PEP 562), so that a pickled model finds it by name."""
    if name == "_InceptionBStride1":
        return _inception_b_stride1()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class InceptionWSOL(WSOLModel):
    # wsolevaluation main.py: for inception, 'Mixed' and 'Conv2d_1..4' learn at lr, the rest
    # (the new head) at lr * lr_classifier_ratio
    head_prefixes = ("neck.", "classifier.")
    _LAYERS = (
        "Conv2d_1a_3x3",
        "Conv2d_2a_3x3",
        "Conv2d_2b_3x3",
        "Conv2d_3b_1x1",
        "Conv2d_4a_3x3",
        "Mixed_5b",
        "Mixed_5c",
        "Mixed_5d",
        "Mixed_6a",
        "Mixed_6b",
        "Mixed_6c",
        "Mixed_6d",
        "Mixed_6e",
    )

    def __init__(self, num_classes: int, large_feature_map: bool = False):
        super().__init__()
        self.backbone = _InceptionTrunk(large_feature_map)
        # the reference's SPG_A3_1b / SPG_A3_2b, each after a dropout of 0.5
        self.neck = nn.Sequential(
            nn.Dropout(0.5),
            nn.Conv2d(768, 1024, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Conv2d(1024, 1024, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
        )
        # the dropout before the class map (SPG_A4): it acts on the logits in training only,
        # never on the CAM (evaluated in eval mode)
        self.logit_dropout = nn.Dropout(0.5)
        self.classifier = nn.Linear(1024, num_classes)
        init_reference_weights(self, "xavier")  # InceptionCam: initialize_weights(..., 'xavier')
        init_class_map(self.classifier)  # the class map SPG_A4 is a 1 x 1 conv: xavier too
        self.torchvision_weights = "Inception_V3_Weights.IMAGENET1K_V1"

    def pre_logit(self, features: torch.Tensor) -> torch.Tensor:
        return self.logit_dropout(features)

    @classmethod
    def rename_torchvision_key(cls, key):
        name, _, _ = key.partition(".")
        return f"backbone.{key}" if name in cls._LAYERS else None

    def prepare_acol(self):
        # wsolevaluation inception.py InceptionAcol: branches on Mixed_6e (768 -> 1024 -> 1024
        # -> K), no dropout, xavier; everything but Conv2d_* / Mixed_* at the head rate
        self.logit_dropout = nn.Identity()
        return AcolLayout(nn.Identity(), 768, 1024, xavier_init, ("neck.", "method_head."))

    def prepare_spg(self):
        # wsolevaluation inception.py InceptionSpg: B1 on the pooled Mixed_5d output (the input
        # of Mixed_6a, 288 channels), B2 on Mixed_6d's output (768; not Mixed_6e's, as the
        # reference reads it), both 512 wide; C on the head's output after its dropout
        trunk = self.backbone
        init_class_map(self.classifier)
        return SpgLayout(
            (trunk.Mixed_6a, "input"),
            288,
            (trunk.Mixed_6d, "output"),
            768,
            512,
            1024,
            ("neck.", "classifier.", "method_head."),
            xavier_init,
        )

    adl_without_dropout = True  # the reference's InceptionAdl head has no dropout

    def adl_sites(self):
        # wsolevaluation inception.py InceptionAdl: ADL_5d, ADL_6e, ADL_A3_2b
        return [self.backbone.Mixed_5d, self.backbone.Mixed_6e, self.neck[5]]


@register_model
def inception_v3(num_classes: int, large_feature_map: bool = False) -> WSOLModel:
    return InceptionWSOL(num_classes, large_feature_map)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SmallCNN(WSOLModel):
    def __init__(self, num_classes: int, width: int = 32):
        super().__init__()
        self.backbone = nn.Sequential(
            _conv(3, width),
            _conv(width, width, 2),
            _conv(width, 2 * width),
            _conv(2 * width, 2 * width, 2),
            _conv(2 * width, 4 * width),
            _conv(4 * width, 4 * width),
        )
        self.neck = nn.Identity()
        self.classifier = nn.Linear(4 * width, num_classes)
        init_classifier(self.classifier)


@register_model
def smallcnn(num_classes: int) -> WSOLModel:
    return SmallCNN(num_classes)


def torchvision_state_dict(weights_name: str) -> dict:
    """Download (or take from the torch hub cache) torchvision's ImageNet weights; without a
    network, say where to put the file instead of a download traceback."""
    import os

    import torch

    enum_name, _, member = weights_name.partition(".")
    weights = getattr(_tvm(), enum_name)[member]
    try:
        return weights.get_state_dict(progress=True)
    except OSError as err:  # URLError, socket errors, an unwritable cache
        cache = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
        raise ValueError(
            f"cannot download torchvision's {weights_name} ({err}). Without a network: copy "
            f"{weights.url} to {cache}, or set model.pretrained to a local weights file, or "
            "model.pretrained=null for random weights"
        ) from None


__all__ = ["resnet50", "resnet18", "vgg16", "inception_v3", "smallcnn", "torchvision_state_dict"]
