"""Running a model over a whole split in batches, and its loss and accuracy on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class EvalResult:
    loss: float
    acc: float
    predictions: torch.Tensor  # (N,) predicted class per image, on the CPU; empty for a k-NN monitor
    probabilities: torch.Tensor | None = None  # (N, classes) softmax, on the CPU


def chunks(*tensors: torch.Tensor, size: int) -> Iterator[tuple[torch.Tensor, ...]]:
    """The same `size` rows of each tensor at a time."""
    for start in range(0, len(tensors[0]), size):
        yield tuple(t[start : start + size] for t in tensors)


@torch.no_grad()
def outputs(fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, size: int) -> torch.Tensor:
    """fn applied to `size` rows of `inputs` at a time, concatenated, as float32."""
    return torch.cat([fn(x).float() for (x,) in chunks(inputs, size=size)])


def classification_result(logits: torch.Tensor, labels: torch.Tensor) -> EvalResult:
    """Mean cross-entropy (without label smoothing), accuracy, predictions and probabilities."""
    loss = F.cross_entropy(logits, labels).item()
    probabilities = logits.softmax(1).cpu()
    predictions = probabilities.argmax(1)
    return EvalResult(loss, (predictions == labels.cpu()).double().mean().item(), predictions, probabilities)
