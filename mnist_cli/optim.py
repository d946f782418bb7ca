"""The optimizer and the learning-rate schedule, built from the optimizer and scheduler groups.

The schedule is one function of the step, lr_factor(), applied through LambdaLR: easy to read,
to test, and to resume (its state is just the step count).
"""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig

from mnist_cli.models.classifier import Classifier


def lr_scales(model: Classifier, layer_decay: float) -> dict[int, float]:
    """Layer-wise learning-rate decay: the head trains at the full rate, the backbone's last block
    at `layer_decay` times it, the block before at layer_decay**2, and so on down to the input
    (parameters outside the listed blocks count with the first). {id(parameter): scale}."""
    scales = {id(p): layer_decay ** len(model.blocks) for p in model.backbone.parameters()}
    for depth, block in enumerate(model.blocks, start=1):
        for module in block:
            scales.update({id(p): layer_decay ** (len(model.blocks) + 1 - depth) for p in module.parameters()})
    scales.update({id(p): 1.0 for p in model.head.parameters()})
    return scales


def build_optimizer(cfg: DictConfig, model: Classifier, layer_decay: float = 1.0) -> torch.optim.Optimizer:
    """Weight decay applies to weight matrices and conv kernels, not to biases and norm scales;
    with layer_decay < 1, earlier backbone blocks learn more slowly (lr_scales)."""
    params = [p for p in model.parameters() if p.requires_grad]
    scales = lr_scales(model, layer_decay) if layer_decay != 1.0 else {}
    groups = []
    for scale in sorted({scales.get(id(p), 1.0) for p in params}, reverse=True):
        members = [p for p in params if scales.get(id(p), 1.0) == scale]
        groups += [
            {"params": [p for p in members if p.ndim >= 2], "weight_decay": cfg.weight_decay, "lr": cfg.lr * scale},
            {"params": [p for p in members if p.ndim < 2], "weight_decay": 0.0, "lr": cfg.lr * scale},
        ]
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.name == "adadelta":
        return torch.optim.Adadelta(groups, lr=cfg.lr, rho=cfg.rho)
    optimizer_class = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.name]
    return optimizer_class(groups, lr=cfg.lr, betas=tuple(cfg.betas))


def lr_factor(step: int, total_steps: int, steps_per_epoch: int, cfg: DictConfig) -> float:
    """The multiple of the optimizer's lr to use at `step` (0-based) of `total_steps`."""
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)  # 0 -> 1 after the warmup
    if cfg.name == "none":
        return 1.0
    if cfg.name == "step":
        return cfg.gamma ** math.floor((step - warmup) / (cfg.step_epochs * steps_per_epoch))
    if cfg.name == "cosine":
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.name == "onecycle":
        start, end = 1 / cfg.div_factor, 1 / (cfg.div_factor * cfg.final_div_factor)
        if progress < cfg.pct_start:
            return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * progress / cfg.pct_start))
        return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * (progress - cfg.pct_start) / (1 - cfg.pct_start)))
    raise ValueError(f"unknown scheduler '{cfg.name}'")


def build_scheduler(
    cfg: DictConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int
) -> torch.optim.lr_scheduler.LambdaLR:
    total = steps_per_epoch * epochs
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, steps_per_epoch, cfg))
