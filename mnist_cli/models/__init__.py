"""The models: conf/model/<name>.yaml names the function that builds one with `_target_` (cnn.cnn,
resnet18.resnet18, vit.vit); its other keys are that function's arguments, the class count comes
from the data set.

Every model is a Classifier (classifier.py): a backbone, an nn.Module that maps (N, 1, 28, 28)
images to (N, feature_dim) features and says how its layers group into blocks from input to
output (`block_groups()`: for partial finetuning and layer-wise learning rates), followed by a
linear head. Adding a model is its file (a backbone and the function that builds its Classifier)
and its YAML file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mnist_cli.targets import build

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from mnist_cli.models.classifier import Classifier


def build_model(cfg: DictConfig, num_classes: int) -> Classifier:
    """The model conf/model names, for `num_classes` classes."""
    return build(cfg, num_classes=num_classes)
