"""The model registry: a model name in conf/model/<name>.yaml maps to the module that builds it.

Each model module defines `build_backbone(cfg) -> (backbone, feature_dim)` and `blocks(backbone)`,
its layers grouped into blocks from input to output (for partial finetuning and layer-wise learning
rates); every model is then a Classifier: that backbone followed by a linear head. Adding a model is
one file plus one line here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from mnist_cli.models.classifier import Classifier

MODELS = {
    "cnn": "mnist_cli.models.cnn",
    "resnet18": "mnist_cli.models.resnet18",
    "vit": "mnist_cli.models.vit",
}


def build_model(cfg: DictConfig, num_classes: int) -> Classifier:
    from mnist_cli.models.classifier import Classifier

    module = importlib.import_module(MODELS[cfg.name])
    backbone, feature_dim = module.build_backbone(cfg)
    return Classifier(backbone, feature_dim, num_classes, module.blocks(backbone), dropout=cfg.head_dropout)
