"""Every model is a backbone that returns features and a head that maps them to class scores."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """`backbone` (with its `feature_dim` and `block_groups()`) followed by a linear head for
    `num_classes` classes, with dropout `head_dropout` before it; `name`: what runs and reports call
    the model (conf/model's name)."""

    def __init__(self, backbone: nn.Module, num_classes: int, head_dropout: float = 0.0, name: str = "model"):
        super().__init__()
        self.name = name
        self.backbone = backbone
        self.feature_dim = backbone.feature_dim
        self.dropout = head_dropout
        # The backbone's modules grouped into blocks, input to output (a plain list: not registered
        # twice, so the state_dict keys stay those of backbone.*).
        self.blocks = backbone.block_groups()
        self.trainable_blocks: list[list[nn.Module]] = []
        self.backbone_frozen = False
        self.head = self.new_head(num_classes)

    def new_head(self, num_classes: int) -> nn.Sequential:
        return nn.Sequential(nn.Dropout(self.dropout), nn.Linear(self.feature_dim, num_classes))

    @property
    def num_classes(self) -> int:
        return self.head[-1].out_features

    def reset_head(self, num_classes: int) -> None:
        """A fresh, randomly initialized head for another class count."""
        device = self.head[-1].weight.device
        self.head = self.new_head(num_classes).to(device)

    def grow_head(self, num_classes: int) -> None:
        """A head for more classes whose first rows are the old head's, unchanged: the classes it
        knew keep their answers, the new ones start fresh."""
        old = self.head[-1]
        self.reset_head(num_classes)
        with torch.no_grad():
            self.head[-1].weight[: old.out_features] = old.weight
            self.head[-1].bias[: old.out_features] = old.bias

    def freeze_backbone(self, train_last_blocks: int = 0) -> None:
        """Train the head (and the last `train_last_blocks` blocks of the backbone) only: the other
        backbone weights get no gradients and their BatchNorm statistics stay as they are."""
        self.backbone.requires_grad_(False)
        self.trainable_blocks = self.blocks[len(self.blocks) - train_last_blocks :] if train_last_blocks else []
        for block in self.trainable_blocks:
            for module in block:
                module.requires_grad_(True)
        self.backbone_frozen = True
        self.train(self.training)

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
            for block in self.trainable_blocks:
                for module in block:
                    module.train(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def classifier_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The classifier's weights out of a learner's state_dict (the task's own heads dropped)."""
    return {key.removeprefix("classifier."): value for key, value in state.items() if key.startswith("classifier.")}
