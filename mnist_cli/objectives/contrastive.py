"""objective=contrastive: self-supervised pretraining by contrast (SimCLR): two random views of every image go through the
backbone and a projection head, and the NT-Xent loss pulls each image's two views together and
pushes the other images of the batch away. No labels are used to train.

The views (data/views.py) are made on the training device for the whole batch at once. Each epoch
reports the k-nearest-neighbour accuracy of the backbone's frozen features on the validation split
(labels used to measure only), which says whether the representation is improving.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from mnist_cli.data.batches import BatchPrep
from mnist_cli.data.views import Views
from mnist_cli.models.classifier import Classifier
from mnist_cli.objectives.base import Batch, Forward
from mnist_cli.objectives.self_supervised import Learner, SelfSupervised


class ContrastiveLearner(Learner):
    """A classifier's backbone with a projection head."""

    def __init__(self, classifier: Classifier, hidden: int, dim: int):
        super().__init__(classifier)
        self.projector = nn.Sequential(
            nn.Linear(classifier.feature_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.features(x))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """NT-Xent over 2N embeddings: each view's positive is the other view of its image, its
    negatives the 2N - 2 other views. Returns (loss, how many views picked their positive, / 2:
    a count of images, like a classifier's correct answers)."""
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    similarity = z @ z.T / temperature
    similarity.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(similarity, targets), (similarity.argmax(1) == targets).sum() / 2


class Contrastive(SelfSupervised):
    """NT-Xent between two random views of each image (conf/objective/contrastive.yaml says what
    each argument means)."""

    def __init__(
        self,
        name: str,
        temperature: float,
        projection_hidden: int,
        projection_dim: int,
        knn_k: int,
        knn_temperature: float,
        views: dict,
        classifier: Classifier,
        prep: BatchPrep,
        trainer: DictConfig,
    ):
        learner = ContrastiveLearner(classifier, projection_hidden, projection_dim)
        super().__init__(name, learner, prep, knn_k, knn_temperature, trainer.seed)
        self.temperature = temperature
        self.views = Views(prep, **views)

    def loss(self, forward: Forward, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        views = [self.views(batch.images, batch.generator) for _ in range(2)]
        z1, z2 = forward(torch.cat(views)).chunk(2)
        return nt_xent(z1, z2, self.temperature)
