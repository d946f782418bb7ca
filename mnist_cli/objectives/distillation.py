"""Knowledge distillation (Hinton et al., 2015): a student learns from the labels and from a
teacher's softened class probabilities. `mnist finetune ckpt=<student> teacher=<ckpt>`; it wraps
the supervised task (same inputs, same validation), changing only the loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mnist_cli.data.split import Split
from mnist_cli.evaluation.inference import EvalResult
from mnist_cli.objectives.base import Batch, Forward, Task
from mnist_cli.objectives.supervised import Supervised, correct


class Distillation(Task):
    """The student's loss for a batch: (1 - alpha) * cross-entropy with the labels
    + alpha * T^2 * KL(teacher's softmax(logits / T) || student's), the T^2 keeping the soft
    term's gradients on the scale of the hard one's."""

    def __init__(self, task: Supervised, teacher: nn.Module, alpha: float, temperature: float):
        self.task = task
        self.model = task.model
        self.teacher = teacher.eval().requires_grad_(False)
        self.alpha = alpha
        self.temperature = temperature

    def loss(self, forward: Forward, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.task.inputs(batch)
        logits = forward(x)
        with torch.no_grad():
            teacher_logits = self.teacher(x).float()
        loss = distillation_loss(
            logits.float(), teacher_logits, batch.labels, self.alpha, self.temperature, self.task.label_smoothing
        )
        return loss, correct(logits, batch.labels)

    def validate(self, model: nn.Module, bank: Split, split: Split, batch_size: int) -> EvalResult:
        return self.task.validate(model, bank, split, batch_size)


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    temperature: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    hard = F.cross_entropy(student, labels, label_smoothing=label_smoothing)
    soft = (
        F.kl_div(
            F.log_softmax(student / temperature, 1),
            F.log_softmax(teacher / temperature, 1),
            reduction="batchmean",
            log_target=True,
        )
        * temperature**2
    )
    return (1 - alpha) * hard + alpha * soft
