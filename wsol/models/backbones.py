"""The registered WSOL backbones.

* ``resnet50``: torchvision ResNet-50 with layer4 at stride 1 (14 x 14 features at 224 px), GAP,
  linear; ``large_feature_map=True`` also sets layer3 to stride 1 (28 x 28), as the reference's
  option of that name.
* ``vgg16``: VGG16-GAP: VGG16's conv layers without the last max-pool (14 x 14 at 224 px;
  ``large_feature_map=True`` drops pool4 too: 28 x 28), a new 3 x 3 conv to 1024 channels + ReLU,
  GAP, linear (the reference's ``VggCam``).
* ``inception_v3``: torchvision InceptionV3 up to Mixed_6e (17 x 17 at 299 px), a new 3 x 3 conv
  to 1024 channels + ReLU, GAP, linear.
* ``resnet18``: ResNet-18 with layer4 at stride 1: a light GPU/CPU model.
* ``smallcnn``: six conv layers, for CPU runs on the synthetic set (seconds per epoch).
"""

from __future__ import annotations

from torch import nn
from torchvision import models as tvm

from .registry import register_model
from .wsol_model import WSOLModel


def _stride1(layer: nn.Sequential) -> None:
    block = layer[0]
    # torchvision puts a Bottleneck's stride in conv2 and a BasicBlock's in conv1
    conv = block.conv2 if isinstance(block, tvm.resnet.Bottleneck) else block.conv1
    conv.stride = (1, 1)
    block.downsample[0].stride = (1, 1)


class ResNetWSOL(WSOLModel):
    def __init__(
        self, resnet: tvm.ResNet, num_classes: int, weights: str, large_feature_map: bool = False
    ):
        super().__init__()
        _stride1(resnet.layer4)
        if large_feature_map:
            _stride1(resnet.layer3)
        resnet.fc = nn.Identity()
        self.backbone = resnet
        self.neck = nn.Identity()
        self.classifier = nn.Linear(resnet.layer4[-1].conv1.in_channels, num_classes)
        self.torchvision_weights = weights

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
        tvm.resnet50(weights=None), num_classes, "ResNet50_Weights.IMAGENET1K_V1", large_feature_map
    )


@register_model
def resnet18(num_classes: int, large_feature_map: bool = False) -> WSOLModel:
    return ResNetWSOL(
        tvm.resnet18(weights=None), num_classes, "ResNet18_Weights.IMAGENET1K_V1", large_feature_map
    )


class VGGWSOL(WSOLModel):
    def __init__(self, num_classes: int, large_feature_map: bool = False):
        super().__init__()
        features = tvm.vgg16(weights=None).features[:30]  # without pool5
        if large_feature_map:  # without pool4 too; conv indices (and weight keys) stay as they are
            features[23] = nn.Identity()
        self.backbone = features
        self.neck = nn.Sequential(
            nn.Conv2d(512, 1024, kernel_size=3, padding=1), nn.ReLU(inplace=True)
        )
        self.classifier = nn.Linear(1024, num_classes)
        nn.init.kaiming_normal_(self.neck[0].weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.neck[0].bias)
        self.torchvision_weights = "VGG16_Weights.IMAGENET1K_V1"

    @staticmethod
    def rename_torchvision_key(key):
        return "backbone." + key.removeprefix("features.") if key.startswith("features.") else None


@register_model
def vgg16(num_classes: int, large_feature_map: bool = False) -> WSOLModel:
    return VGGWSOL(num_classes, large_feature_map)


class InceptionWSOL(WSOLModel):
    _LAYERS = (
        "Conv2d_1a_3x3",
        "Conv2d_2a_3x3",
        "Conv2d_2b_3x3",
        "maxpool1",
        "Conv2d_3b_1x1",
        "Conv2d_4a_3x3",
        "maxpool2",
        "Mixed_5b",
        "Mixed_5c",
        "Mixed_5d",
        "Mixed_6a",
        "Mixed_6b",
        "Mixed_6c",
        "Mixed_6d",
        "Mixed_6e",
    )

    def __init__(self, num_classes: int):
        super().__init__()
        full = tvm.inception_v3(weights=None, aux_logits=False, init_weights=False)
        self.backbone = nn.Sequential(*[getattr(full, name) for name in self._LAYERS])
        self.neck = nn.Sequential(
            nn.Conv2d(768, 1024, kernel_size=3, padding=1), nn.ReLU(inplace=True)
        )
        self.classifier = nn.Linear(1024, num_classes)
        self.torchvision_weights = "Inception_V3_Weights.IMAGENET1K_V1"

    @classmethod
    def rename_torchvision_key(cls, key):
        name, _, rest = key.partition(".")
        return f"backbone.{cls._LAYERS.index(name)}.{rest}" if name in cls._LAYERS else None


@register_model
def inception_v3(num_classes: int) -> WSOLModel:
    return InceptionWSOL(num_classes)


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


@register_model
def smallcnn(num_classes: int) -> WSOLModel:
    return SmallCNN(num_classes)


def torchvision_state_dict(weights_name: str) -> dict:
    """Download (or take from the torch hub cache) torchvision's ImageNet weights."""
    enum_name, _, member = weights_name.partition(".")
    weights = getattr(tvm, enum_name)[member]
    return weights.get_state_dict(progress=True)


__all__ = ["resnet50", "resnet18", "vgg16", "inception_v3", "smallcnn", "torchvision_state_dict"]
