"""What the self-supervised objectives share: building an objective's learner and loss by name, the
k-NN monitor of the backbone's frozen features, and getting the classifier back out of a checkpoint.

An objective module (contrastive.py, mae.py) defines `build_learner(classifier, cfg)`: a Learner,
the classifier plus the objective's own heads; and `build_objective(cfg, dataset, prep)`: an Objective whose `loss(forward, images,
generator)` returns (loss, a count of correct answers, or 0).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from mnist_cli.data import Split
from mnist_cli.models.classifier import Classifier

OBJECTIVES = {"contrastive": "mnist_cli.contrastive", "mae": "mnist_cli.mae"}


def build_learner(cfg: DictConfig, classifier: Classifier) -> Learner:
    return importlib.import_module(OBJECTIVES[cfg.name]).build_learner(classifier, cfg)


def build_objective(cfg: DictConfig, dataset: DictConfig, prep) -> Objective:
    return importlib.import_module(OBJECTIVES[cfg.name]).build_objective(cfg, dataset, prep)


def classifier_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The classifier's weights out of a learner's state_dict (the objective's own heads dropped)."""
    return {key.removeprefix("classifier."): value for key, value in state.items() if key.startswith("classifier.")}


class Learner(nn.Module):
    """A classifier with an objective's own heads. Its checkpoint keeps `classifier.*` (what
    finetuning starts from; the classifier's head is replaced then) beside the heads (for resuming)."""

    def __init__(self, classifier: Classifier):
        super().__init__()
        self.classifier = classifier

    @property
    def num_classes(self) -> int:
        return self.classifier.num_classes

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's features: what the k-NN monitor compares and finetuning keeps."""
        return self.classifier.backbone(x)


class Objective(ABC):
    """The trainer's view of a self-supervised objective: the loss of a batch of uint8 images, and
    the k-NN accuracy it reports for validation and the final test (labels used to measure only)."""

    def __init__(self, cfg: DictConfig, dataset: DictConfig, prep):
        self.cfg = cfg
        self.prep = prep  # the plain normalization, for the k-NN features

    @abstractmethod
    def loss(self, forward, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss of the batch, count of correct answers or 0); `forward` is the learner, maybe compiled."""

    @torch.no_grad()
    def features(self, learner: Learner, split: Split, batch: int) -> torch.Tensor:
        learner.eval()
        chunks = [learner.features(self.prep(split.images[i : i + batch], train=False)).float() for i in range(0, len(split), batch)]
        return F.normalize(torch.cat(chunks), dim=1)

    @torch.no_grad()
    def knn_accuracy(self, learner: Learner, bank: Split, queries: Split, batch: int) -> float:
        """Accuracy of a similarity-weighted vote of each query's knn_k nearest `bank` images."""
        bank_features = self.features(learner, bank, batch)
        query_features = self.features(learner, queries, batch)
        classes = int(bank.labels.max()) + 1
        correct = 0
        for i in range(0, len(queries), batch):
            # float32 even under bf16/fp16 autocast: the vote weights are float32 and close
            # similarities must not round together
            with torch.autocast(queries.labels.device.type, enabled=False):
                similarity, nearest = (query_features[i : i + batch] @ bank_features.T).topk(self.cfg.knn_k, dim=1)
            votes = torch.zeros(len(nearest), classes, device=nearest.device)
            votes.scatter_add_(1, bank.labels[nearest], (similarity / self.cfg.knn_temperature).exp())
            correct += int((votes.argmax(1) == queries.labels[i : i + batch]).sum())
        return correct / len(queries)
