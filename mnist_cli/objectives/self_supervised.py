"""What the self-supervised tasks share (contrastive.py, mae.py): the Learner (a classifier with the
task's own heads, saved under classifier.* so finetuning finds it) and validation by the task's
loss on fixed views and the k-NN accuracy of the backbone's frozen features. No labels are used to
train; they measure the k-NN monitor only."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mnist_cli.data.batches import BatchPrep
from mnist_cli.data.split import Split
from mnist_cli.evaluation.inference import EvalResult, chunks, outputs
from mnist_cli.models.classifier import Classifier
from mnist_cli.objectives.base import Batch, Task


class Learner(nn.Module):
    """A classifier with a task's own heads. Its checkpoint keeps `classifier.*` (what finetuning
    starts from; the classifier's head is replaced then) beside the heads (for resuming)."""

    def __init__(self, classifier: Classifier):
        super().__init__()
        self.classifier = classifier

    @property
    def num_classes(self) -> int:
        return self.classifier.num_classes

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's features: what the k-NN monitor compares and finetuning keeps."""
        return self.classifier.backbone(x)


class SelfSupervised(Task):
    """`model`: the learner; `knn_k` neighbours vote in the k-NN monitor, each weighted by
    exp(cosine similarity / knn_temperature); `seed`: of the fixed validation views."""

    def __init__(self, name: str, model: Learner, prep: BatchPrep, knn_k: int, knn_temperature: float, seed: int):
        self.name = name
        self.model = model
        self.prep = prep
        self.knn_k, self.knn_temperature = knn_k, knn_temperature
        self.seed = seed

    @torch.no_grad()
    def validate(self, model: nn.Module, bank: Split, split: Split, batch_size: int) -> EvalResult:
        """The task's loss on `split` (the same views every epoch) and the k-NN accuracy of its
        features against `bank`'s."""
        model.eval()
        views = torch.Generator(device=split.images.device).manual_seed(self.seed)
        losses = [
            self.loss(model, Batch(images, labels, views))[0]
            for images, labels in chunks(split.images, split.labels, size=batch_size)
        ]
        return EvalResult(
            float(torch.stack(losses).mean()),
            self.knn_accuracy(model, bank, split, batch_size),
            torch.empty(0, dtype=torch.long),
        )

    def features(self, learner: Learner, split: Split, batch_size: int) -> torch.Tensor:
        learner.eval()
        return F.normalize(
            outputs(lambda x: learner.features(self.prep(x, train=False)), split.images, batch_size), dim=1
        )

    @torch.no_grad()
    def knn_accuracy(self, learner: Learner, bank: Split, queries: Split, batch_size: int) -> float:
        """Accuracy of a similarity-weighted vote of each query's knn_k nearest `bank` images."""
        bank_features = self.features(learner, bank, batch_size)
        query_features = self.features(learner, queries, batch_size)
        classes = int(bank.labels.max()) + 1
        correct = 0
        # float32 even under bf16/fp16 autocast: the vote weights are float32 and close
        # similarities must not round together
        with torch.autocast(query_features.device.type, enabled=False):
            for features, labels in chunks(query_features, queries.labels, size=batch_size):
                similarity, nearest = (features @ bank_features.T).topk(self.knn_k, dim=1)
                votes = torch.zeros(len(nearest), classes, device=nearest.device)
                votes.scatter_add_(1, bank.labels[nearest], (similarity / self.knn_temperature).exp())
                correct += int((votes.argmax(1) == labels).sum())
        return correct / len(queries)
