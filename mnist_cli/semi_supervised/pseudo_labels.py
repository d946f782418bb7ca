"""Which unlabeled images get a pseudo-label, and which one: the weak view's class probabilities,
optionally aligned to the labeled images' class shares (distribution alignment, Berthelot et al.,
2020: a class the model over-predicts on the pool is scaled down), and a confidence threshold,
fixed or per class (FlexMatch's, Zhang et al., 2021: a class the model has confidently predicted
on fewer pool images gets a lower threshold, so the classes it learns late are not starved and the
one it over-predicts does not run away). What it keeps (the running class shares of its
predictions, each pool image's last confident class) is in every checkpoint, so a resumed run
labels as the uninterrupted one does."""

from __future__ import annotations

from typing import Any

import torch

from mnist_cli.training import distributed


def aligned(probabilities: torch.Tensor, target: torch.Tensor, running: torch.Tensor) -> torch.Tensor:
    """`probabilities` (N, C) scaled by target / running (the shares the classes should have and
    the mean prediction on the pool so far), each row renormalized."""
    scaled = probabilities * (target / running.clamp_min(1e-6))
    return scaled / scaled.sum(1, keepdim=True)


def flexible_thresholds(learned: torch.Tensor, classes: int, threshold: float) -> torch.Tensor:
    """FlexMatch's per-class thresholds (C,): sigma_c, the pool images whose last confident
    prediction was c, normalized by the largest sigma or by the pool images not yet confidently
    predicted, whichever is more (its warm-up); then threshold * beta / (2 - beta)."""
    sigma = torch.bincount(learned[learned >= 0], minlength=classes).float()
    unused = (learned < 0).sum().float()
    beta = sigma / torch.maximum(sigma.max(), unused).clamp_min(1.0)
    return threshold * beta / (2 - beta)


class PseudoLabeler:
    """`threshold` with `thresholds` fixed (every class) or flexible (per class); `alignment`: scale
    the probabilities to the labeled class shares `target`, tracked with `momentum`."""

    def __init__(
        self, pool_size: int, target: torch.Tensor, threshold: float, thresholds: str, alignment: bool, momentum: float
    ):
        self.threshold, self.flexible, self.alignment, self.momentum = (
            threshold,
            thresholds == "flexible",
            alignment,
            momentum,
        )
        self.target = target  # (C,) on the training device, summing to 1
        self.running = target.clone()  # the pool predictions' running mean
        self.learned = torch.full((pool_size,), -1, dtype=torch.long, device=target.device)

    def __call__(self, probabilities: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pseudo-labels, which were taken) for the weak views' `probabilities` of pool images `idx`."""
        if self.alignment:
            mean = distributed.all_reduce(probabilities.mean(0)) / distributed.world_size()
            self.running = self.momentum * self.running + (1 - self.momentum) * mean
            probabilities = aligned(probabilities, self.target, self.running)
        confidence, pseudo = probabilities.max(1)
        if not self.flexible:
            return pseudo, confidence >= self.threshold
        thresholds = flexible_thresholds(self.learned, len(self.target), self.threshold)
        sure = confidence >= self.threshold
        self.learned[idx[sure]] = pseudo[sure]  # (under torchrun each rank keeps its own images' record)
        return pseudo, confidence >= thresholds[pseudo]

    def state_dict(self) -> dict[str, Any]:
        return {"running": self.running.cpu(), "learned": self.learned.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.running = state["running"].to(self.target.device)
        self.learned = state["learned"].to(self.target.device)
