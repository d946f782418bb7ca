"""What one Trainer.fit() trains with, and the part of last.ckpt that restores it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from mnist_cli.data.split import Split


@dataclass
class Fitting:
    model: nn.Module  # whose state_dict is saved
    train: Split
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: AveragedModel | None  # the moving average of the weights (trainer.ema)
    forward: nn.Module | None = None  # the model as it is called: maybe wrapped by DDP and compiled
    ddp: nn.parallel.DistributedDataParallel | None = None

    @property
    def measured(self) -> nn.Module:
        """The weights that are validated, tested and kept in best.ckpt: the average, if kept."""
        return self.ema.module if self.ema is not None else self.model

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
