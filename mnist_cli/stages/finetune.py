"""`mnist finetune ckpt=...`: train a checkpoint further, on its data set or another one.

The model is rebuilt from the checkpoint's saved config; a head for another class count replaces
the saved one. finetune.strategy: full (every weight, optionally with layer-wise lr decay),
linear (the head only), partial (the head and the backbone's last blocks) or lora (the head and
low-rank adapters on a ViT's linear layers, merged into the weights of the best checkpoint).
With teacher=<ckpt>, the model also learns from that model's soft targets (training/tasks/distillation.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig

from mnist_cli.errors import UserError
from mnist_cli.models import build_model
from mnist_cli.models.lora import add_adapters
from mnist_cli.run_dir import RunDir
from mnist_cli.stages.source import load_source
from mnist_cli.stages.train_and_test import read_data, train_and_test
from mnist_cli.training.checkpoint import (
    load_classifier_checkpoint,
    model_from_checkpoint,
    resolve_checkpoint,
)
from mnist_cli.training.runtime import setup
from mnist_cli.training.tasks.base import Task
from mnist_cli.training.tasks.distillation import Distillation

log = logging.getLogger(__name__)


def run(cfg: DictConfig, run: RunDir, resume: dict[str, Any] | None) -> dict[str, Any]:
    device = setup(cfg)
    if resume is not None:  # the weights come from the run's last checkpoint
        data = read_data(cfg)
        model = build_model(cfg.model, len(cfg.dataset.classes))
    else:
        source, ckpt = load_source(cfg)
        data = read_data(cfg)  # a folder of images names the classes the new head learns
        classes = list(cfg.dataset.classes)
        model = model_from_checkpoint(ckpt)
        if classes != list(ckpt["config"]["dataset"]["classes"]) or ckpt["objective"] != "supervised":
            log.info(
                f"a new {len(classes)}-class head for {', '.join(classes[:12])}{', ...' if len(classes) > 12 else ''} "
                f"(the checkpoint's {ckpt['objective']} model knows {ckpt['config']['dataset']['name']}'s classes)"
            )
            model.reset_head(len(classes))
        log.info(f"finetuning {source} ({ckpt['model_name']}, {ckpt['objective']}, epoch {ckpt['epoch']})")
    if cfg.finetune.strategy == "linear":
        model.freeze_backbone()
    elif cfg.finetune.strategy == "partial":
        model.freeze_backbone(train_last_blocks=cfg.finetune.unfreeze_blocks)
    elif cfg.finetune.strategy == "lora":
        if cfg.model.name != "vit":
            raise UserError(
                f"finetune.strategy=lora adapts a vit's linear layers; this checkpoint holds a {cfg.model.name}"
            )
        model.freeze_backbone()
        count = add_adapters(model.backbone, cfg.finetune.lora_rank, cfg.finetune.lora_alpha)
        log.info(f"LoRA adapters of rank {cfg.finetune.lora_rank} on {count} linear layers")
    results = train_and_test(cfg, run, model, device, resume, data, wrap_task=distill_from_teacher(cfg, device))
    return {**results, "source_checkpoint": cfg.ckpt, **({"teacher": cfg.teacher} if cfg.teacher else {})}


def distill_from_teacher(cfg: DictConfig, device: torch.device) -> Callable[[Task], Task] | None:
    """With teacher=<ckpt> (a model that knows the same classes as the student): the supervised
    task wrapped in distillation from it."""
    if cfg.teacher is None:
        return None
    source = resolve_checkpoint(cfg.teacher, cfg.outputs_root)
    ckpt = load_classifier_checkpoint(source)
    classes = list(ckpt["config"]["dataset"]["classes"])
    if classes != list(cfg.dataset.classes):
        raise UserError(
            f"teacher={source} knows the classes {classes}, the student learns {list(cfg.dataset.classes)}; "
            "pick a teacher trained on the same data set"
        )
    cfg.teacher = str(source)
    teacher = model_from_checkpoint(ckpt).to(device, memory_format=torch.channels_last)
    log.info(
        f"distilling from {source} ({ckpt['model_name']}, {sum(p.numel() for p in teacher.parameters()):,} parameters), "
        f"alpha {cfg.distill.alpha}, temperature {cfg.distill.temperature}"
    )
    return lambda task: Distillation(task, teacher, cfg.distill.alpha, cfg.distill.temperature)
