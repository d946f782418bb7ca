"""The fast default: a few stages of conv-BatchNorm-ReLU (one or more) and a 2x2 max-pool, then one
hidden linear layer, then the classifier head. conf/model/cnn.yaml names cnn().

A stage's max-pool runs before its last ReLU: the two commute (the max of rectified values is the
rectified max), so the answers are the same and the ReLU touches a quarter of the pixels."""

from __future__ import annotations

from torch import nn

from mnist_cli.models.classifier import Classifier


def cnn(
    num_classes: int,
    channels: list[int],
    hidden: int,
    head_dropout: float,
    name: str,
    convs: int = 1,
    kernel_size: int | list[int] = 3,
    padding: str = "same",
    batch_norm: bool = True,
) -> Classifier:
    """conf/model/cnn.yaml's model (the defaults of `convs` and after: what a checkpoint saved
    before they existed holds)."""
    kernels = [kernel_size] * len(channels) if isinstance(kernel_size, int) else list(kernel_size)
    return Classifier(
        CNNBackbone(channels, hidden, convs, kernels, padding, batch_norm), num_classes, head_dropout, name
    )


class CNNBackbone(nn.Sequential):
    def __init__(
        self,
        channels: list[int],
        hidden: int,
        convs: int,
        kernels: list[int],
        padding: str,
        batch_norm: bool,
        image_size: int = 28,
        in_channels: int = 1,
    ):
        """`kernels`: one odd size a stage; `padding`: same (each conv keeps the size) or valid."""
        layers: list[nn.Module] = []
        size = image_size
        for width, kernel in zip(channels, kernels):
            pad = kernel // 2 if padding == "same" else 0
            for i in range(convs):
                layers.append(nn.Conv2d(in_channels, width, kernel, padding=pad, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(width))
                layers += [nn.MaxPool2d(2), nn.ReLU(inplace=True)] if i == convs - 1 else [nn.ReLU(inplace=True)]
                in_channels, size = width, size + 2 * pad - kernel + 1
            size //= 2
        layers.append(nn.Flatten())
        feature_dim = in_channels * size * size
        if hidden:
            layers += [nn.Linear(feature_dim, hidden), nn.ReLU(inplace=True)]
            feature_dim = hidden
        super().__init__(*layers)
        self.feature_dim = feature_dim

    def block_groups(self) -> list[list[nn.Module]]:
        """The layers grouped into blocks from input to output: each conv stage (up to the ReLU
        after its pool), then the hidden layer."""
        found: list[list[nn.Module]] = [[]]
        for layer in self:
            if isinstance(layer, nn.Flatten):
                break
            pooled = bool(found[-1]) and isinstance(found[-1][-1], nn.MaxPool2d)
            found[-1].append(layer)
            if pooled:  # the ReLU after a stage's pool ends the stage
                found.append([])
        hidden = [layer for layer in self if isinstance(layer, nn.Linear)]
        return found[:-1] + ([hidden] if hidden else [])
