"""Turning uint8 image batches into model inputs on the training device: random affine (and
elastic) augmentation of the whole batch at once, then normalization. No per-sample Python."""

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
        self.hflip = bool(aug.hflip)
        self.max_shift = float(aug.max_shift)
        self.max_rotate = math.radians(float(aug.max_rotate))
        self.max_scale = float(aug.max_scale)
        self.elastic_alpha = float(aug.elastic_alpha)
        self.elastic_sigma = float(aug.elastic_sigma)
        moves = (self.max_shift, self.max_rotate, self.max_scale, self.elastic_alpha)
        self.augment = bool(aug.enabled) and (any(m > 0 for m in moves) or self.hflip)
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
            x = self.random_transform(x, generator, shard)
        return x

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] -> the model's input (a new tensor, so gradients flow through it)."""
        return ((x - self.mean) / self.std).contiguous(memory_format=self.memory_format)

    def random_transform(self, x: torch.Tensor, generator: torch.Generator | None, shard: Shard) -> torch.Tensor:
        """Rotate, scale, shift (and mirror half of) the images, each by its own random amount, and
        with elastic_alpha > 0 bend each by its own smooth random field (one grid_sample call)."""
        n, _, h, w = x.shape
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
        field = self.elastic_alpha * smoothed(uniform(n, 2, h, w), self.elastic_sigma) if self.elastic_alpha else None
        return affine(x, angle, scale, shift, flip, field)


def smoothed(noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """Each (N, C, H, W) map blurred by a Gaussian of `sigma` pixels (zeros beyond the edges), as
    elastic distortion smooths its random displacements (Simard et al., 2003)."""
    radius = math.ceil(3 * sigma)
    t = torch.arange(-radius, radius + 1, dtype=noise.dtype, device=noise.device)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    n, c, h, w = noise.shape
    flat = noise.reshape(n * c, 1, h, w)
    flat = F.conv2d(flat, kernel.view(1, 1, 1, -1), padding=(0, radius))
    return F.conv2d(flat, kernel.view(1, 1, -1, 1), padding=(radius, 0)).view(n, c, h, w)


def affine(
    x: torch.Tensor,
    angle: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    flip: torch.Tensor | None = None,
    field: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rotate (radians), scale and shift (pixels, x then y) each image of the batch by its own
    amount, mirror it left to right where `flip` is -1 (+1: not), and move each output pixel's
    source by `field` (N, 2, H, W: pixels, x then y), in one grid_sample call (None: no rotation /
    scaling / shift / mirroring / field); what moves in from outside is black."""
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
    if field is not None:
        grid = grid + (field * torch.tensor([2 / w, 2 / h], device=x.device)[:, None, None]).permute(0, 2, 3, 1)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
