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

import torch
import torch.nn.functional as F
from torch import nn

from mnist_cli.data.batches import BatchPrep
from mnist_cli.data.split import Split
from mnist_cli.data.views import Views
from mnist_cli.errors import UserError
from mnist_cli.evaluation.inference import EvalResult
from mnist_cli.objectives.base import Batch, Forward, Task


class FixMatch(Task):
    """`task` (supervised) extended to learn from `pool` (on the training device); conf/semi_supervised/
    fixmatch.yaml says what each other argument means."""

    def __init__(
        self,
        name: str,
        ratio: int,
        threshold: float,
        weight: float,
        teacher: str,
        strong: dict,
        task: Task,
        prep: BatchPrep,
        pool: Split,
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
        self.ratio, self.threshold, self.weight = ratio, threshold, weight
        self.teacher = teacher
        self.strong = Views(prep, **strong)
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
        strong_logits = []

        def together(x: torch.Tensor) -> torch.Tensor:
            """The labeled inputs and the strong views in one forward pass (one set of BatchNorm
            statistics, one pass for torchrun's gradient averaging); the labeled part's logits."""
            logits = forward(torch.cat([x, strong]))
            strong_logits.append(logits[len(x) :])
            return logits[: len(x)]

        labeled_loss, correct = self.task.loss(together, batch)
        unlabeled_loss, pseudo, taken = pseudo_label_loss(strong_logits[0], weak, self.threshold)
        self.counts = {
            "pool_images": torch.tensor(n, device=device),
            "pseudo_labels": taken.sum(),
            "pseudo_labels_right": (taken & (pseudo == self.pool.labels[idx])).sum(),
        }
        return labeled_loss + self.weight * unlabeled_loss, correct

    def validate(self, model: nn.Module, bank: Split, split: Split, batch_size: int) -> EvalResult:
        return self.task.validate(model, bank, split, batch_size)

    def tallies(self) -> dict[str, torch.Tensor]:
        return self.counts

    def epoch_metrics(self, sums: dict[str, float]) -> dict[str, float | None]:
        taken = sums["pseudo_labels"]
        return {
            "pseudo_label_rate": taken / sums["pool_images"],
            "pseudo_label_acc": sums["pseudo_labels_right"] / taken if taken else None,
        }


def in_eval_mode(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """model(x) with dropout off and BatchNorm's running statistics (the model's mode restored)."""
    was_training = model.training
    model.eval()
    try:
        return model(x)
    finally:
        model.train(was_training)


def pseudo_label_loss(
    strong: torch.Tensor, weak: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The strong views' cross-entropy with the pseudo-labels: the top classes of the weak views'
    class probabilities `weak` where they reach `threshold`; the other images add 0 (the mean is
    over all images). Returns (loss, pseudo-labels, which were taken)."""
    confidence, pseudo = weak.max(1)
    taken = confidence >= threshold
    return (F.cross_entropy(strong.float(), pseudo, reduction="none") * taken).mean(), pseudo, taken
