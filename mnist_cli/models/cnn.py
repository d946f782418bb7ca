"""The fast default: a few stages of conv3x3-BatchNorm-ReLU (one or more) and a 2x2 max-pool,
then one hidden linear layer, then the classifier head. conf/model/cnn.yaml names cnn()."""

from __future__ import annotations

from torch import nn

from mnist_cli.models.classifier import Classifier


def cnn(
    num_classes: int, channels: list[int], hidden: int, head_dropout: float, name: str, convs: int = 1
) -> Classifier:
    """conf/model/cnn.yaml's model (convs=1: what a checkpoint saved before `convs` existed holds)."""
    return Classifier(CNNBackbone(channels, hidden, convs), num_classes, head_dropout, name)


class CNNBackbone(nn.Sequential):
    def __init__(self, channels: list[int], hidden: int, convs: int = 1, image_size: int = 28, in_channels: int = 1):
        layers: list[nn.Module] = []
        size = image_size
        for width in channels:
            for _ in range(convs):
                layers += [
                    nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                in_channels = width
            layers.append(nn.MaxPool2d(2))
            size //= 2
        layers.append(nn.Flatten())
        feature_dim = in_channels * size * size
        if hidden:
            layers += [nn.Linear(feature_dim, hidden), nn.ReLU(inplace=True)]
            feature_dim = hidden
        super().__init__(*layers)
        self.feature_dim = feature_dim

    def block_groups(self) -> list[list[nn.Module]]:
        """The layers grouped into blocks from input to output: each conv stage (up to its pool),
        then the hidden layer."""
        found: list[list[nn.Module]] = [[]]
        for layer in self:
            if isinstance(layer, nn.Flatten):
                break
            found[-1].append(layer)
            if isinstance(layer, nn.MaxPool2d):
                found.append([])
        hidden = [layer for layer in self if isinstance(layer, nn.Linear)]
        return found[:-1] + ([hidden] if hidden else [])
