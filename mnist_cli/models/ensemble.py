"""Several trained classifiers as one model: the average of their class probabilities.

Its output is the log of that average (a log-probability for each class), so softmax of the
output is the averaged probabilities, and whatever takes a classifier's logits (the loss, the
test, attacks, test-time augmentation, export) takes an ensemble as it is.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Ensemble(nn.Module):
    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if len({m.num_classes for m in members}) != 1:
            raise ValueError("the members of an ensemble must predict the same classes")
        self.members = nn.ModuleList(members)

    @property
    def num_classes(self) -> int:
        return self.members[0].num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # log(mean_i softmax_i) computed as logsumexp_i(log_softmax_i) - log(n): never log(0)
        log_probs = torch.stack([m(x).float().log_softmax(1) for m in self.members])
        return torch.logsumexp(log_probs, 0) - math.log(len(self.members))
