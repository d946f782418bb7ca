"""The optimizer and the learning-rate schedule, built from the optimizer and scheduler groups.

conf/optimizer/<name>.yaml names the optimizer class with `_target_` (any torch.optim class, or an
importable one like it); its other keys are the class's arguments, the parameter groups come from
here. conf/scheduler/<name>.yaml names the function that makes a schedule (schedules.py). The
schedule runs through LambdaLR: easy to read, to test, and to resume (its state is just the step count).
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from mnist_cli.errors import UserError
from mnist_cli.models.classifier import Classifier
from mnist_cli.targets import build


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


def no_decay(model: nn.Module) -> set[int]:
    """The parameters that take no weight decay (ids): biases and norm scales (fewer than 2 dims),
    and those a module names in its no_weight_decay() (position embeddings, class and mask tokens:
    decaying them pulls them towards 0, which means nothing for them)."""
    found = {id(p) for p in model.parameters() if p.ndim < 2}
    for module in model.modules():
        if hasattr(module, "no_weight_decay"):
            named = dict(module.named_parameters())
            found |= {id(named[name]) for name in module.no_weight_decay() if name in named}
    return found


def build_optimizer(cfg: DictConfig, model: Classifier, layer_decay: float = 1.0) -> torch.optim.Optimizer:
    """Weight decay applies to weight matrices and conv kernels, not to the no_decay() parameters;
    with layer_decay < 1, earlier backbone blocks learn more slowly (lr_scales)."""
    params = [p for p in model.parameters() if p.requires_grad]
    scales = lr_scales(model, layer_decay) if layer_decay != 1.0 else {}
    plain = no_decay(model)
    groups = []
    for scale in sorted({scales.get(id(p), 1.0) for p in params}, reverse=True):
        members = [p for p in params if scales.get(id(p), 1.0) == scale]
        groups += [
            {
                "params": [p for p in members if id(p) not in plain],
                "weight_decay": cfg.weight_decay,
                "lr": cfg.lr * scale,
            },
            {"params": [p for p in members if id(p) in plain], "weight_decay": 0.0, "lr": cfg.lr * scale},
        ]
    try:
        return build(cfg, groups)
    except ValueError as e:  # a value the class refuses
        raise UserError(f"optimizer ({cfg._target_}): {e}; fix the optimizer.* values") from None


def build_scheduler(
    cfg: DictConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule conf/scheduler names over a run of `total_steps` optimizer steps (Trainer.length())."""
    schedule = build(cfg)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step, total_steps, steps_per_epoch))
