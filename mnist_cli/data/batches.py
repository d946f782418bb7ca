"""Turning uint8 image batches into model inputs on the training device: random affine
augmentation of the whole batch at once, then normalization. No per-sample Python."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

Shard = tuple[int, int]  # (rank, world) of a torchrun job


class BatchPrep:
    def __init__(self, dataset_cfg: DictConfig, channels_last: bool = True):
        self.mean = float(dataset_cfg.mean)
        self.std = float(dataset_cfg.std)
        aug = dataset_cfg.augment
        self.augment = bool(aug.enabled) and (aug.max_shift > 0 or aug.max_rotate > 0 or aug.max_scale > 0 or aug.hflip)
        self.hflip = bool(aug.hflip)
        self.max_shift = float(aug.max_shift)
        self.max_rotate = math.radians(float(aug.max_rotate))
        self.max_scale = float(aug.max_scale)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, images: torch.Tensor, train: bool, **draws: Any) -> torch.Tensor:
        """The model's input: pixels(images, train, generator=..., shard=...), normalized."""
        return self.normalize(self.pixels(images, train, **draws))

    def pixels(
        self, images: torch.Tensor, train: bool, generator: torch.Generator | None = None, shard: Shard = (0, 1)
    ) -> torch.Tensor:
        """The batch as pixels in [0, 1], augmented when `train` (before normalization: what
        attacks and corruptions work on). `shard=(rank, world)`: `images` are rows rank::world of a
        global batch; the random draws are made for the whole global batch, so every rank's
        generator stays in step with the others and each image is augmented as a single process
        would augment it."""
        x = images.float().div_(255)
        if train and self.augment:
            x = self.random_affine(x, generator, shard)
        return x

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] -> the model's input (a new tensor, so gradients flow through it)."""
        return ((x - self.mean) / self.std).contiguous(memory_format=self.memory_format)

    def random_affine(self, x: torch.Tensor, generator: torch.Generator | None, shard: Shard) -> torch.Tensor:
        """Rotate, scale, shift (and mirror half of) the images, each by its own random amount (one
        grid_sample call)."""
        n = x.shape[0]
        rank, world = shard

        def uniform(*shape: int) -> torch.Tensor:  # in [-1, 1), this shard's rows of the global draw
            return torch.rand(shape[0] * world, *shape[1:], device=x.device, generator=generator)[rank::world] * 2 - 1

        angle, scale, shift = (
            uniform(n) * self.max_rotate,
            1 + uniform(n) * self.max_scale,
            uniform(n, 2) * self.max_shift,
        )
        # drawn only when on, so the other draws stay as they were
        flip = torch.where(uniform(n) < 0, -1.0, 1.0) if self.hflip else None
        return affine(x, angle, scale, shift, flip)


def affine(
    x: torch.Tensor,
    angle: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    flip: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rotate (radians), scale and shift (pixels, x then y) each image of the batch by its own
    amount, and mirror it left to right where `flip` is -1 (+1: not), in one grid_sample call
    (None: no rotation / scaling / shift / mirroring); what moves in from outside is black."""
    n, _, h, w = x.shape
    angle = torch.zeros(n, device=x.device) if angle is None else angle
    scale = torch.ones(n, device=x.device) if scale is None else scale
    shift = torch.zeros(n, 2, device=x.device) if shift is None else shift
    shift = shift * torch.tensor([2 / w, 2 / h], device=x.device)  # affine_grid's [-1, 1] coordinates
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    mirror = (
        torch.ones(n, device=x.device) if flip is None else flip
    )  # -1 reads each output column from the mirrored one
    theta = torch.stack(
        [torch.stack([cos * mirror, -sin, shift[:, 0]], 1), torch.stack([sin * mirror, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
