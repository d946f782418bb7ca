"""The fast default: a few conv3x3-BatchNorm-ReLU-maxpool stages and one hidden linear layer."""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn


class CNNBackbone(nn.Sequential):
    def __init__(self, channels: list[int], hidden: int, image_size: int = 28, in_channels: int = 1):
        layers: list[nn.Module] = []
        size = image_size
        for width in channels:
            layers += [
                nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            in_channels, size = width, size // 2
        layers.append(nn.Flatten())
        feature_dim = in_channels * size * size
        if hidden:
            layers += [nn.Linear(feature_dim, hidden), nn.ReLU(inplace=True)]
            feature_dim = hidden
        super().__init__(*layers)
        self.feature_dim = feature_dim


def blocks(backbone: CNNBackbone) -> list[list[nn.Module]]:
    """The backbone's blocks from input to output: each conv stage, then the hidden layer."""
    layers = list(backbone)
    stages = [layers[i : i + 4] for i in range(0, len(layers), 4) if isinstance(layers[i], nn.Conv2d)]
    hidden = [layer for layer in layers if isinstance(layer, nn.Linear)]
    return stages + ([hidden] if hidden else [])


def build_backbone(cfg: DictConfig) -> tuple[nn.Module, int]:
    backbone = CNNBackbone(list(cfg.channels), cfg.hidden)
    return backbone, backbone.feature_dim
