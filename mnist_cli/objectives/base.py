"""The trainer's view of what it trains: a Task gives the loss of a batch and the validation measure,
and may count more per step (tallies) for metrics of its own in each epoch's row."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mnist_cli.data.split import Split
from mnist_cli.evaluation.inference import EvalResult

Forward = Callable[[torch.Tensor], torch.Tensor]  # the model being trained (maybe compiled or wrapped by DDP)


@dataclass
class Batch:
    """One training batch as the trainer draws it: this rank's rows of a global batch."""

    images: torch.Tensor  # (n, 1, H, W) uint8 on the training device
    labels: torch.Tensor  # (n,) int64
    generator: torch.Generator  # every random draw of the step (augmentation, views, masks, attacks)
    shard: tuple[int, int] = (0, 1)  # (rank, world): `images` are rows rank::world of the global batch
    average: nn.Module | None = None  # the moving average of the weights (trainer.ema), when one is kept


class Task(ABC):
    model: nn.Module  # what the trainer trains: the classifier, or a learner holding it (self_supervised.py)

    @abstractmethod
    def loss(self, forward: Forward, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean loss of the batch, count of correct answers: a tensor, so no host sync)."""

    @abstractmethod
    def validate(self, model: nn.Module, bank: Split, split: Split, batch_size: int) -> EvalResult:
        """Loss and accuracy on `split` (`bank`: the training split, for measures that compare with it)."""

    def tallies(self) -> dict[str, torch.Tensor]:
        """Counts the last loss() call made besides its loss and correct answers (tensors on the
        device: no host sync). The trainer sums them over the epoch (and saves the sums in mid-epoch
        checkpoints) and passes the sums to epoch_metrics(). Most tasks count nothing more."""
        return {}

    def epoch_metrics(self, sums: dict[str, Any]) -> dict[str, Any]:
        """The task's own metrics for an epoch's row, from its summed tallies (a number, or a list
        for a tally of several counts)."""
        return {}

    def epoch_warnings(self, metrics: dict[str, Any]) -> list[str]:
        """What an epoch's own metrics say is going wrong, a line each (logged, and kept in summary.json)."""
        return []

    def state_dict(self) -> dict[str, Any]:
        """What the task learns as it trains besides the weights (kept in last.ckpt, for a resume)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what state_dict() gave."""
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state, and was given {sorted(state)}")
