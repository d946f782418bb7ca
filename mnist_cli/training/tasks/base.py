"""The trainer's view of what it trains: a Task gives the loss of a batch and the validation measure."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from mnist_cli.data.datasets import Split
from mnist_cli.evaluation.inference import EvalResult

Forward = Callable[[torch.Tensor], torch.Tensor]  # the model being trained (maybe compiled or wrapped by DDP)


@dataclass
class Batch:
    """One training batch as the trainer draws it: this rank's rows of a global batch."""

    images: torch.Tensor  # (n, 1, H, W) uint8 on the training device
    labels: torch.Tensor  # (n,) int64
    generator: torch.Generator  # every random draw of the step (augmentation, views, masks, attacks)
    shard: tuple[int, int] = (0, 1)  # (rank, world): `images` are rows rank::world of the global batch


class Task(ABC):
    @abstractmethod
    def loss(self, forward: Forward, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean loss of the batch, count of correct answers: a tensor, so no host sync)."""

    @abstractmethod
    def validate(self, model: nn.Module, bank: Split, split: Split, batch_size: int) -> EvalResult:
        """Loss and accuracy on `split` (`bank`: the training split, for measures that compare with it)."""
