"""ResNet18 (torchvision's blocks) adapted to 1-channel 28x28 images. conf/model/resnet18.yaml names
resnet18().

stem=small: 3x3 conv, stride 1, no max-pool: the residual stages see 28, 14, 7 and 4 pixels
(the accurate choice). stem=strided: the same conv with stride 2: 14, 7, 4, 2 pixels, about 4x
cheaper per image, for CPUs.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from mnist_cli.models.classifier import Classifier

STEM_STRIDE = {"small": 1, "strided": 2}


def resnet18(num_classes: int, stem: str, head_dropout: float, name: str) -> Classifier:
    return Classifier(ResNet18Backbone(stem), num_classes, head_dropout, name)


class ResNet18Backbone(ResNet):
    """torchvision's ResNet18 with a 1-channel 3x3 stem and no max-pool, ending at the pooled 512
    features (the head is the Classifier's)."""

    def __init__(self, stem: str = "small"):
        if stem not in STEM_STRIDE:
            raise ValueError(f"model.stem={stem}: use one of {', '.join(STEM_STRIDE)}")
        super().__init__(BasicBlock, [2, 2, 2, 2])
        self.conv1 = nn.Conv2d(1, 64, 3, stride=STEM_STRIDE[stem], padding=1, bias=False)
        self.maxpool = nn.Identity()
        self.feature_dim = self.fc.in_features
        self.fc = nn.Identity()

    def block_groups(self) -> list[list[nn.Module]]:
        """The layers grouped into blocks from input to output: the stem, then the four residual stages."""
        return [[self.conv1, self.bn1], [self.layer1], [self.layer2], [self.layer3], [self.layer4]]
