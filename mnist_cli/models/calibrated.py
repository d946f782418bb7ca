"""A classifier whose logits are divided by a temperature fitted on held-out images after training
(temperature scaling, Guo et al., 2017): the same answers, and probabilities that say how often
answers like them are right (label smoothing alone caps a clean digit near 92%).

What eval, predict, serve, explain and export load (training/source.py) when the checkpoint holds a
temperature and `calibrate=true`; an Ensemble averages its calibrated members."""

from __future__ import annotations

import torch
from torch import nn

from mnist_cli.models.ensemble import Ensemble


class Calibrated(nn.Module):
    def __init__(self, model: nn.Module, temperature: float):
        super().__init__()
        self.model = model
        self.temperature = float(temperature)

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) / self.temperature


def uncalibrated(model: nn.Module) -> nn.Module:
    """The same model with its raw probabilities (an ensemble: of its members' raw ones)."""
    if isinstance(model, Calibrated):
        return model.model
    if isinstance(model, Ensemble):
        return Ensemble([uncalibrated(m) for m in model.members])
    return model
