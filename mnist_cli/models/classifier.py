"""Every model is a backbone that returns features and a head that maps them to class scores."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.dropout = dropout
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

    def freeze_backbone(self) -> None:
        """Train the head only: backbone weights get no gradients and its BatchNorm statistics
        stay as they are (the backbone stays in eval mode)."""
        self.backbone.requires_grad_(False)
        self.backbone_frozen = True
        self.backbone.eval()

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
