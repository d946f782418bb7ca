"""Knowledge distillation (Hinton et al., 2015): a student learns from the labels and from a
teacher's softened class probabilities. `mnist finetune ckpt=<student> teacher=<ckpt>`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Distillation:
    """The student's loss for a batch: (1 - alpha) * cross-entropy with the labels
    + alpha * T^2 * KL(teacher's softmax(logits / T) || student's), the T^2 keeping the soft
    term's gradients on the scale of the hard one's."""

    def __init__(self, teacher: nn.Module, alpha: float, temperature: float):
        self.teacher = teacher.eval().requires_grad_(False)
        self.alpha = alpha
        self.temperature = temperature

    def loss(self, x: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = self.teacher(x).float()
        return distillation_loss(logits.float(), teacher_logits, labels, self.alpha, self.temperature, label_smoothing)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, alpha: float,
                      temperature: float, label_smoothing: float = 0.0) -> torch.Tensor:
    hard = F.cross_entropy(student, labels, label_smoothing=label_smoothing)
    soft = F.kl_div(F.log_softmax(student / temperature, 1), F.log_softmax(teacher / temperature, 1),
                    reduction="batchmean", log_target=True) * temperature**2
    return (1 - alpha) * hard + alpha * soft
