"""Building a model from its config group: conf/model/<name>.yaml names the backbone class with
`_target_` (as the optimizer and scheduler groups name theirs); its other keys, but `name` and
`head_dropout`, are the class's arguments.

A backbone is an nn.Module that maps (N, 1, 28, 28) images to (N, feature_dim) features and says
how its layers group into blocks from input to output (`block_groups()`: for partial finetuning
and layer-wise learning rates); every model is then a Classifier: that backbone followed by a
linear head. Adding a model is its file (cnn.py, resnet18.py, vit.py) and its YAML file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mnist_cli.targets import knobs, target

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from mnist_cli.models.classifier import Classifier


def build_model(cfg: DictConfig, num_classes: int) -> Classifier:
    from hydra.utils import get_class

    from mnist_cli.models.classifier import Classifier

    backbone = target(cfg, "model", get_class)(**knobs(cfg, "name", "head_dropout"))
    return Classifier(backbone, backbone.feature_dim, num_classes, backbone.block_groups(), dropout=cfg.head_dropout)
