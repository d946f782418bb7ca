"""ResNet18 (torchvision's blocks) adapted to 1-channel 28x28 images.

stem=small: 3x3 conv, stride 1, no max-pool: the residual stages see 28, 14, 7 and 4 pixels
(the accurate choice). stem=strided: the same conv with stride 2: 14, 7, 4, 2 pixels, about 4x
cheaper per image, for CPUs.
"""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn
from torchvision.models import resnet18

STEM_STRIDE = {"small": 1, "strided": 2}


def blocks(backbone: nn.Module) -> list[list[nn.Module]]:
    """The backbone's blocks from input to output: the stem, then the four residual stages."""
    return [[backbone.conv1, backbone.bn1], [backbone.layer1], [backbone.layer2], [backbone.layer3], [backbone.layer4]]


def build_backbone(cfg: DictConfig) -> tuple[nn.Module, int]:
    if cfg.stem not in STEM_STRIDE:
        raise ValueError(f"model.stem={cfg.stem}: use one of {', '.join(STEM_STRIDE)}")
    net = resnet18(weights=None)
    net.conv1 = nn.Conv2d(1, 64, 3, stride=STEM_STRIDE[cfg.stem], padding=1, bias=False)
    net.maxpool = nn.Identity()
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()  # the backbone ends at the pooled 512 features; the head is separate
    return net, feature_dim
