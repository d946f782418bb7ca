"""objective=supervised: cross-entropy on the labels of augmented batches; optionally on
adversarially attacked batches (trainer.adversarial), a transform of the batch's pixels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from mnist_cli.data.batches import BatchPrep
from mnist_cli.data.split import Split
from mnist_cli.evaluation.inference import EvalResult, classification_result, outputs
from mnist_cli.evaluation.robustness import attack
from mnist_cli.models.classifier import Classifier
from mnist_cli.objectives.base import Batch, Forward, Task


class AdversarialBatches:
    """Replaces a batch's pixels with an attack on them (fgsm | pgd), for adversarial training. The
    attack runs with BatchNorm in eval mode, so its passes leave the running statistics alone."""

    def __init__(self, model: nn.Module, prep: BatchPrep, trainer: DictConfig):
        self.model, self.prep = model, prep
        self.name, self.eps, self.steps = trainer.adversarial, trainer.adversarial_eps, trainer.adversarial_steps
        self.step_size, self.random_start = trainer.adversarial_step_size, trainer.adversarial_random_start

    def __call__(self, pixels: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        self.model.eval()
        attacked = attack(
            self.name,
            lambda p: self.model(self.prep.normalize(p)).float(),
            pixels,
            labels,
            self.eps,
            self.steps,
            self.step_size,
            self.random_start,
            generator,
        )
        self.model.train()
        return attacked


class Supervised(Task):
    """Learns `classifier`'s classes from the labels, with trainer.label_smoothing (and trainer.adversarial)."""

    def __init__(self, name: str, classifier: Classifier, prep: BatchPrep, trainer: DictConfig):
        self.name = name
        self.model = classifier
        self.prep = prep
        self.label_smoothing = trainer.label_smoothing
        self.adversarial = AdversarialBatches(classifier, prep, trainer) if trainer.adversarial is not None else None

    def inputs(self, batch: Batch) -> torch.Tensor:
        """The model's input: the batch augmented (and attacked), normalized."""
        pixels = self.prep.pixels(batch.images, train=True, generator=batch.generator, shard=batch.shard)
        if self.adversarial is not None:
            pixels = self.adversarial(pixels, batch.labels, batch.generator)
        return self.prep.normalize(pixels)

    def loss(self, forward: Forward, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = forward(self.inputs(batch))
        loss = F.cross_entropy(logits.float(), batch.labels, label_smoothing=self.label_smoothing)
        return loss, correct(logits, batch.labels)

    def validate(self, model: nn.Module, bank: Split, split: Split, batch_size: int) -> EvalResult:
        return evaluate(model, self.prep, split, batch_size)


def correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (logits.detach().argmax(1) == labels).sum()


def evaluate(model: nn.Module, prep: BatchPrep, split: Split, batch_size: int) -> EvalResult:
    """The classifier on `split`, in batches of `batch_size` (run it under the run's autocast)."""
    model.eval()
    return classification_result(outputs(lambda x: model(prep(x, train=False)), split.images, batch_size), split.labels)
