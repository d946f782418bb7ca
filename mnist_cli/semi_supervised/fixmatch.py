"""semi_supervised=fixmatch: FixMatch (Sohn et al., 2020), semi-supervised training from a few labels and a pool of unlabeled
images. It wraps the supervised task (classification, or distillation from a teacher): each step adds
to the labeled batch's loss a loss on `ratio` times as many pool images. A weakly augmented view of
each (the data set's own augmentation, as in supervised training) gives a pseudo-label where the
model's top class probability reaches `threshold` (`teacher=average`: the moving average of the
weights gives it, in eval mode, instead of the weights being trained); a strongly augmented view of
the same image (data/views.py) learns that label, with weight `weight`.

The pool images of a step are drawn at random (with replacement) from the run's generator, whose
state every checkpoint keeps, so a resumed run draws the very same ones. The pool's labels never
reach the loss: they only measure how many pseudo-labels were taken and how many were right (the
`pseudo_label_rate` and `pseudo_label_acc` of each epoch's metrics row).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mnist_cli.data.batches import BatchPrep
from mnist_cli.data.split import Split
from mnist_cli.data.views import Views
from mnist_cli.errors import UserError
from mnist_cli.evaluation.inference import EvalResult
from mnist_cli.objectives.base import Batch, Forward, Task
from mnist_cli.semi_supervised.association import association_loss
from mnist_cli.semi_supervised.pseudo_labels import PseudoLabeler


class FixMatch(Task):
    """`task` (supervised) extended to learn from `pool` (on the training device); conf/semi_supervised/
    fixmatch.yaml says what each other argument means."""

    def __init__(
        self,
        name: str,
        ratio: int,
        threshold: float,
        thresholds: str,
        alignment: bool,
        alignment_momentum: float,
        weight: float,
        teacher: str,
        drift_warning: float,
        association: float,
        visit: float,
        walk_labels: int,
        strong: dict,
        task: Task,
        prep: BatchPrep,
        pool: Split,
        labeled: Split,
    ):
        if not len(pool):
            raise UserError(
                f"every training image keeps its label, so semi_supervised={name} has no unlabeled image to learn "
                "from; keep fewer (e.g. dataset.labels_per_class=10)"
            )
        self.name = name
        self.task = task
        self.model = task.model
        self.prep = prep
        self.pool = pool
        self.ratio, self.weight = ratio, weight
        self.teacher = teacher
        self.strong = Views(prep, **strong)
        counts = torch.bincount(labeled.labels, minlength=int(max(labeled.labels.max(), pool.labels.max())) + 1)
        self.shares = (counts / counts.sum()).float().to(pool.images.device)  # the labeled images' class shares
        self.labeler = PseudoLabeler(len(pool), self.shares, threshold, thresholds, alignment, alignment_momentum)
        self.drift_warning = drift_warning
        self.association, self.visit = association, visit
        self.labeled = labeled.to(pool.images.device)
        self.walk_labels = min(walk_labels, len(labeled))
        self.counts: dict[str, torch.Tensor] = {}

    def loss(self, forward: Forward, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        rank, world = batch.shard
        n = len(batch.images) * self.ratio
        device = batch.images.device
        # the global batch's draw, this rank's rows of it (like the augmentation's draws)
        idx = torch.randint(len(self.pool), (n * world,), device=device, generator=batch.generator)[rank::world]
        images = self.pool.images[idx]
        weak = self.prep(images, train=True, generator=batch.generator, shard=batch.shard)
        with torch.no_grad():
            if self.teacher == "average":
                weak = in_eval_mode(batch.average, weak)
            else:
                weak = forward(weak)
            weak = weak.float().softmax(1)
        strong = self.strong(images, batch.generator, batch.shard)
        walkers, walker_labels = self.walkers(batch)
        strong_logits, features = [], []

        def together(x: torch.Tensor) -> torch.Tensor:
            """The labeled inputs and the strong views in one forward pass (one set of BatchNorm
            statistics, one pass for torchrun's gradient averaging); the labeled part's logits."""
            keep = self.model.backbone.register_forward_hook(lambda module, inputs, out: features.append(out))
            try:
                logits = forward(torch.cat([x, walkers, strong]))
            finally:
                keep.remove()
            strong_logits.append(logits[len(x) + len(walkers) :])
            return logits[: len(x)]

        labeled_loss, correct = self.task.loss(together, batch)
        if self.association:
            both = features[0].float().flatten(1)
            labeled, pool = both[: -len(strong)], both[-len(strong) :]  # the batch (and walkers), the strong views
            starts = labeled[len(batch.images) :] if len(walkers) else labeled  # the walkers, else the batch
            labeled_loss = labeled_loss + self.association * association_loss(starts, pool, walker_labels, self.visit)
        pseudo, taken = self.labeler(weak, idx)
        right = taken & (pseudo == self.pool.labels[idx])
        classes = len(self.shares)
        self.counts = {
            "pool_images": torch.tensor(n, device=device),
            "pseudo_labels": torch.bincount(pseudo[taken], minlength=classes),  # per class
            "pseudo_labels_right": torch.bincount(pseudo[right], minlength=classes),
        }
        return labeled_loss + self.weight * pseudo_label_loss(strong_logits[0], pseudo, taken), correct

    def walkers(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The labeled images the association's walk starts from, as inputs, and their labels:
        `walk_labels` of all the labeled images (every one, if there are no more), augmented, on top
        of the step's batch; none (the step's own labeled batch is the walk's) for walk_labels=0."""
        if not (self.association and self.walk_labels):
            return torch.zeros(0, *batch.images.shape[1:], device=batch.images.device), batch.labels
        if self.walk_labels == len(self.labeled):
            idx = torch.arange(len(self.labeled), device=batch.images.device)
        else:
            idx = torch.randperm(len(self.labeled), device=batch.images.device, generator=batch.generator)
            idx = idx[: self.walk_labels]
        chosen = self.labeled.images[idx]
        return self.prep(chosen, train=True, generator=batch.generator), self.labeled.labels[idx]

    def validate(self, model: nn.Module, bank: Split, split: Split, batch_size: int) -> EvalResult:
        return self.task.validate(model, bank, split, batch_size)

    def tallies(self) -> dict[str, torch.Tensor]:
        return self.counts

    def epoch_metrics(self, sums: dict[str, Any]) -> dict[str, Any]:
        """The share of pool images given a pseudo-label and how many were right (the pool's labels
        measure, never teach); per class, its share of the pseudo-labels and their accuracy; and the
        drift: how far the class furthest from its share of the labeled images is from it (0.5: half
        as many again, or half as many)."""
        per_class, right = sums["pseudo_labels"], sums["pseudo_labels_right"]
        taken = sum(per_class)
        shares = [c / taken if taken else 0.0 for c in per_class]
        return {
            "pseudo_label_rate": taken / sums["pool_images"],
            "pseudo_label_acc": sum(right) / taken if taken else None,
            "pseudo_label_drift": max(abs(s - t) / t for s, t in zip(shares, self.shares.tolist()) if t > 0),
            "pseudo_label_share": [round(s, 4) for s in shares],
            "pseudo_label_acc_per_class": [round(r / c, 4) if c else None for r, c in zip(right, per_class)],
        }

    def epoch_warnings(self, metrics: dict[str, Any]) -> list[str]:
        drift = metrics["pseudo_label_drift"]
        if drift <= self.drift_warning:
            return []
        shares, worst = metrics["pseudo_label_share"], None
        worst = max(
            range(len(shares)), key=lambda c: abs(shares[c] - self.shares[c].item()) / max(self.shares[c].item(), 1e-9)
        )
        hint = "" if self.labeler.alignment else " (semi_supervised.alignment=true holds the shares)"
        return [
            f"pseudo-labels drift: class {worst} has {shares[worst]:.1%} of them against {self.shares[worst].item():.1%} "
            f"of the labeled images (semi_supervised.drift_warning={self.drift_warning}); a class the model confirms "
            f"its own mistakes on grows like this{hint}"
        ]

    def state_dict(self) -> dict[str, Any]:
        return self.labeler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.labeler.load_state_dict(state)


def in_eval_mode(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """model(x) with dropout off and BatchNorm's running statistics (the model's mode restored)."""
    was_training = model.training
    model.eval()
    try:
        return model(x)
    finally:
        model.train(was_training)


def pseudo_label_loss(strong: torch.Tensor, pseudo: torch.Tensor, taken: torch.Tensor) -> torch.Tensor:
    """The strong views' cross-entropy with the pseudo-labels where they were `taken`; the other
    images add 0 (the mean is over all images)."""
    return (F.cross_entropy(strong.float(), pseudo, reduction="none") * taken).mean()
