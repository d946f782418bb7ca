"""Self-supervised pretraining by contrast (SimCLR): two random views of every image go through the
backbone and a projection head, and the NT-Xent loss pulls each image's two views together and
pushes the other images of the batch away. No labels are used to train.

The views are made on the training device for the whole batch at once: a random resized crop with
rotation (one affine_grid/grid_sample call), a Gaussian blur for some images, and a random erased
rectangle for some. Each epoch reports the k-nearest-neighbour accuracy of the backbone's frozen
features on the validation split (labels used to measure only), which says whether the
representation is improving.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from mnist_cli.data.batches import BatchPrep, affine
from mnist_cli.models.classifier import Classifier
from mnist_cli.training.tasks.base import Batch, Forward
from mnist_cli.training.tasks.self_supervised import Learner, SelfSupervised


class ContrastiveLearner(Learner):
    """A classifier's backbone with a projection head."""

    def __init__(self, classifier: Classifier, cfg: DictConfig):
        super().__init__(classifier)
        self.projector = nn.Sequential(
            nn.Linear(classifier.feature_dim, cfg.projection_hidden),
            nn.BatchNorm1d(cfg.projection_hidden),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.projection_hidden, cfg.projection_dim),
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


class Views:
    """Random views of uint8 image batches, normalized like the data set's inputs."""

    def __init__(self, cfg: DictConfig, prep: BatchPrep):
        self.cfg = cfg  # objective.views
        self.prep = prep
        kernel = torch.exp(-(torch.arange(-2, 3) ** 2) / (2 * float(cfg.blur_sigma) ** 2))
        self.blur_kernel = (kernel[:, None] * kernel[None, :] / kernel.sum() ** 2)[None, None]

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        cfg = self.cfg
        x = self.prep.pixels(images, train=False)
        n, _, h, w = x.shape

        def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
            return low + (high - low) * torch.rand(*shape, device=x.device, generator=generator)

        # random resized crop: a square of side sqrt(area) (a zoom of 1 / side) anywhere inside the image, rotated
        side = uniform(cfg.crop_min_area, 1.0, n).sqrt()
        angle = uniform(-1, 1, n) * math.radians(cfg.max_rotate)
        center = uniform(-1, 1, n, 2) * (1 - side)[:, None]  # in [-1, 1] image coordinates
        x = affine(x, angle, 1 / side, center * torch.tensor([w / 2, h / 2], device=x.device))

        if self.blur_kernel.device != x.device:
            self.blur_kernel = self.blur_kernel.to(x.device)  # once, not every batch
        blurred = F.conv2d(x, self.blur_kernel, padding=2)
        x = torch.where(uniform(0, 1, n, 1, 1, 1) < cfg.blur_prob, blurred, x)

        # random erasing: one rectangle of random size and place, in some images
        eh, ew = (uniform(cfg.erase_min, cfg.erase_max, n) * size for size in (h, w))
        top, left = uniform(0, 1, n) * (h - eh), uniform(0, 1, n) * (w - ew)
        rows = torch.arange(h, device=x.device)[None, :, None]
        cols = torch.arange(w, device=x.device)[None, None, :]
        box = (
            (rows >= top[:, None, None])
            & (rows < (top + eh)[:, None, None])
            & (cols >= left[:, None, None])
            & (cols < (left + ew)[:, None, None])
        )
        erase = (uniform(0, 1, n) < cfg.erase_prob)[:, None, None] & box
        return self.prep.normalize(x.masked_fill(erase[:, None], 0.0))


class Contrastive(SelfSupervised):
    """NT-Xent between two random views of each image."""

    def __init__(self, cfg: DictConfig, prep: BatchPrep, seed: int):
        super().__init__(cfg, prep, seed)
        self.views = Views(cfg.views, prep)

    def loss(self, forward: Forward, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        views = [self.views(batch.images, batch.generator) for _ in range(2)]
        z1, z2 = forward(torch.cat(views)).chunk(2)
        return nt_xent(z1, z2, self.cfg.temperature)


def build_learner(classifier: Classifier, cfg: DictConfig) -> ContrastiveLearner:
    return ContrastiveLearner(classifier, cfg)


def build_task(cfg: DictConfig, learner: ContrastiveLearner, prep: BatchPrep) -> Contrastive:
    return Contrastive(cfg.objective, prep, cfg.trainer.seed)
