"""`mnist finetune ckpt=...`: train a checkpoint further, on its data set or another one.

The model is rebuilt from the checkpoint's saved config; a head for another class count replaces
the saved one. finetune.strategy: full (every weight, optionally with layer-wise lr decay),
linear (the head only), partial (the head and the backbone's last blocks) or lora (the head and
low-rank adapters on a ViT's linear layers, merged into the weights of the best checkpoint).
With teacher=<ckpt>, the model also learns from that model's soft targets (objectives/distillation.py).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from omegaconf import DictConfig

from mnist_cli.errors import UserError
from mnist_cli.models import build_model
from mnist_cli.models.classifier import Classifier
from mnist_cli.models.lora import add_adapters
from mnist_cli.stages.context import StageContext
from mnist_cli.stages.training import read_splits, train_and_test, training_task
from mnist_cli.training.runtime import setup
from mnist_cli.training.source import Source

log = logging.getLogger(__name__)


def run(ctx: StageContext) -> dict[str, Any]:
    device = setup(ctx.cfg)
    teacher = (
        Source.load(ctx.cfg.teacher, ctx.cfg.outputs_root).one("distillation", "teacher").trained()
        if ctx.cfg.teacher
        else None
    )
    if ctx.resume is not None:  # the saved config is settled; the weights come from the run's last checkpoint
        splits = read_splits(ctx.cfg)
        cfg = ctx.settle(dataset=splits.dataset)
        model = build_model(cfg.model, len(cfg.dataset.classes))
    else:
        source = ctx.source().one("finetune")
        described = source.config(ctx.cfg, ctx.overrides, classes_from_data=True)
        # a folder of images names the classes the new head learns; its files are read as the checkpoint's were
        splits = read_splits(ctx.cfg, described["dataset"], described["preprocess"])
        cfg = ctx.settle(**described | {"dataset": splits.dataset}, **({"teacher": teacher.name} if teacher else {}))
        model = starting_model(source, list(cfg.dataset.classes))
    adapt(model, cfg)
    task = training_task(cfg, model, splits, device, teacher=teacher_model(teacher, cfg, device) if teacher else None)
    results = train_and_test(ctx, task, device, splits)
    return {**results, "source_checkpoint": cfg.ckpt, **({"teacher": cfg.teacher} if cfg.teacher else {})}


def starting_model(source: Source, classes: list[str]) -> Classifier:
    """The checkpoint's model, with a fresh head when the classes differ from its own (or its head
    was never trained: a self-supervised checkpoint)."""
    model, ckpt = source.model(), source.checkpoints[0]
    saved = ckpt["config"]["dataset"]
    if classes != list(saved["classes"]) or source.objective != "supervised":
        log.info(
            f"a new {len(classes)}-class head for {', '.join(classes[:12])}{', ...' if len(classes) > 12 else ''} "
            f"(the checkpoint's {source.objective} model knows {saved['name']}'s classes)"
        )
        model.reset_head(len(classes))
    log.info(f"finetuning {source.name} ({ckpt['model_name']}, {source.objective}, epoch {ckpt['epoch']})")
    return model


def adapt(model: Classifier, cfg: DictConfig) -> None:
    """Freeze what finetune.strategy leaves alone; add LoRA's adapters."""
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


def teacher_model(teacher: Source, cfg: DictConfig, device: torch.device) -> torch.nn.Module:
    """teacher=<ckpt>'s model, which must know the same classes as the student."""
    classes = list(teacher.checkpoints[0]["config"]["dataset"]["classes"])
    if classes != list(cfg.dataset.classes):
        raise UserError(
            f"teacher={teacher.name} knows the classes {classes}, the student learns {list(cfg.dataset.classes)}; "
            "pick a teacher trained on the same data set"
        )
    model = teacher.model().to(device, memory_format=torch.channels_last)
    log.info(
        f"distilling from {teacher.name} ({teacher.checkpoints[0]['model_name']}, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters), "
        f"alpha {cfg.distill.alpha}, temperature {cfg.distill.temperature}"
    )
    return model
