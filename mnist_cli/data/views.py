"""Strongly augmented random views of image batches, made on the training device for the whole batch
at once: a random resized crop with rotation and, where elastic_alpha > 0, an elastic bend (one
affine_grid/grid_sample call), a Gaussian blur for some images, and a random erased rectangle for
some. objective=contrastive contrasts two of them per image; semi_supervised=fixmatch learns a
pseudo-label from one. Their strengths are config blocks (objective.views, semi_supervised.strong)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mnist_cli.data.batches import BatchPrep, Shard, affine, smoothed


@dataclass
class Strengths:
    """How strongly the views are bent: objective.views or semi_supervised.strong (their YAML
    comments say what each means)."""

    crop_min_area: float
    max_rotate: float
    blur_prob: float
    blur_sigma: float
    erase_prob: float
    erase_min: float
    erase_max: float
    elastic_alpha: float
    elastic_sigma: float


class Views:
    """Random views of uint8 image batches, normalized like the data set's inputs."""

    def __init__(self, prep: BatchPrep, **strengths: float):
        self.strengths = Strengths(**strengths)
        self.prep = prep
        kernel = torch.exp(-(torch.arange(-2, 3) ** 2) / (2 * float(self.strengths.blur_sigma) ** 2))
        self.blur_kernel = (kernel[:, None] * kernel[None, :] / kernel.sum() ** 2)[None, None]

    def __call__(self, images: torch.Tensor, generator: torch.Generator, shard: Shard = (0, 1)) -> torch.Tensor:
        """A view of each image; `shard=(rank, world)`: `images` are rows rank::world of a global
        batch, and the draws are made for the whole of it (as BatchPrep's augmentation does)."""
        cfg = self.strengths
        x = self.prep.pixels(images, train=False)
        n, _, h, w = x.shape
        rank, world = shard

        def uniform(low: float, high: float, *shape: int) -> torch.Tensor:  # this shard's rows of the draw
            draw = torch.rand(shape[0] * world, *shape[1:], device=x.device, generator=generator)[rank::world]
            return low + (high - low) * draw

        # random resized crop: a square of side sqrt(area) (a zoom of 1 / side) anywhere inside the image, rotated
        side = uniform(cfg.crop_min_area, 1.0, n).sqrt()
        angle = uniform(-1, 1, n) * math.radians(cfg.max_rotate)
        center = uniform(-1, 1, n, 2) * (1 - side)[:, None]  # in [-1, 1] image coordinates
        # drawn only when on, so views without bends keep their draws
        field = (
            cfg.elastic_alpha * smoothed(uniform(-1, 1, n, 2, h, w), cfg.elastic_sigma) if cfg.elastic_alpha else None
        )
        x = affine(x, angle, 1 / side, center * torch.tensor([w / 2, h / 2], device=x.device), field=field)

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
