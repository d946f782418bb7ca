"""`mnist finetune ckpt=...`: train a checkpoint further, on its data set or another one.

The model is rebuilt from the checkpoint's saved config; a head for another class count replaces
the saved one. finetune.strategy: full (every weight, optionally with layer-wise lr decay),
linear (the head only), partial (the head and the backbone's last blocks) or lora (the head and
low-rank adapters on a ViT's linear layers, merged into the weights of the best checkpoint).
With teacher=<ckpt>, the model also learns from that model's soft targets (objectives/distillation.py).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from mnist_cli.data import replay
from mnist_cli.data.split import Split
from mnist_cli.errors import UserError
from mnist_cli.evaluation import gate
from mnist_cli.models import build_model
from mnist_cli.models.classifier import Classifier
from mnist_cli.models.lora import add_adapters
from mnist_cli.stages.context import StageContext
from mnist_cli.stages.training import TrainingSplits, read_splits, train_and_test, training_task
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
        # the data set's own classes, when the run numbers them as the checkpoint it started from did
        own = ctx.resume.get("data_classes")
        dataset = None if own is None else OmegaConf.merge(ctx.cfg.dataset, {"classes": own})
        splits = renumbered(read_splits(ctx.cfg, dataset), list(ctx.cfg.dataset.classes))
        cfg = ctx.settle(dataset=splits.dataset)
        source, how = Source.load(cfg.ckpt, cfg.outputs_root), cfg.finetune.classes
        saved = source.checkpoints[0]["config"]["dataset"]
        if replay.applies(cfg, saved, how):  # the same replay again
            splits = with_replay(splits, source.checkpoints[0], cfg)
        model = build_model(cfg.model, len(cfg.dataset.classes))
    else:
        source = ctx.source().one("finetune")
        described = source.config(ctx.cfg, ctx.overrides, classes_from_data=True)
        # a folder of images names its classes; its files are read as the checkpoint's were
        splits = read_splits(ctx.cfg, described["dataset"], described["preprocess"])
        saved = source.checkpoints[0]["config"]["dataset"]
        classes, how = run_classes(
            list(saved["classes"]), list(splits.dataset.classes), ctx.cfg.finetune.classes, source
        )
        splits = renumbered(splits, classes)
        settled = {"finetune": OmegaConf.merge(ctx.cfg.finetune, {"classes": how})}  # what auto decided
        cfg = ctx.settle(
            **described | {"dataset": splits.dataset} | settled, **({"teacher": teacher.name} if teacher else {})
        )
        if replay.applies(cfg, saved, how):
            splits = with_replay(splits, source.checkpoints[0], cfg)
        model = starting_model(source, classes, how)
    gated = replay.continues(cfg, saved, how) and cfg.finetune.max_forgetting is not None
    if gated:  # the checkpoints record what the gate of their own finetunes measures forgetting on
        splits = dataclasses.replace(splits, holdout=gate.holdout_of(source.checkpoints[0]))
    adapt(model, cfg)
    task = training_task(cfg, model, splits, device, teacher=teacher_model(teacher, cfg, device) if teacher else None)
    results = train_and_test(ctx, task, device, splits)
    if gated:
        results |= judged(cfg, source, task.model, splits.test, device, results["precision"])
    return {**results, "source_checkpoint": cfg.ckpt, **({"teacher": cfg.teacher} if cfg.teacher else {})}


def judged(
    cfg: DictConfig,
    source: Source,
    finetuned: torch.nn.Module,
    corrections: Split,
    device: torch.device,
    precision: str,
) -> dict[str, Any]:
    """The gate's verdict on the finetuned model against the checkpoint it started from, told."""
    verdict = gate.judge(cfg, source.model(), finetuned, source.checkpoints[0], corrections, device, precision)
    found = verdict["gate"]
    log.info(
        f"gate: {'promote' if verdict['promote'] else 'do not promote'}: {found['reason']}; "
        f"{found['holdout']} {found['holdout_acc_before']:.2%} -> {found['holdout_acc_after']:.2%}, "
        f"{found['corrections']} {found['corrections_acc_before']:.2%} -> {found['corrections_acc_after']:.2%}"
    )
    return verdict


def run_classes(known: list[str], found: list[str], asked: str, source: Source) -> tuple[list[str], str]:
    """(the run's classes, how the checkpoint's head serves them: keep | grow | replace) for a data
    set with the classes `found`, a checkpoint that knows `known`, and finetune.classes=`asked`."""
    new = [c for c in found if c not in known]
    if source.objective != "supervised":  # its head was never trained: nothing to keep
        return found, "replace"
    if asked == "auto":
        if new and len(new) < len(found):
            raise UserError(
                f"the data set's classes {', '.join(new)} are new to the checkpoint, which knows {', '.join(known)}: "
                "finetune.classes=grow adds them to its head, finetune.classes=replace learns the data set's classes alone"
            )
        asked = "replace" if new else "keep"
    if asked == "keep" and new:
        raise UserError(
            f"finetune.classes=keep: class {new[0]} is not one the checkpoint knows ({', '.join(known)}); "
            "finetune.classes=grow adds it to the head"
        )
    return {"keep": known, "grow": known + new, "replace": found}[asked], asked


def renumbered(splits: TrainingSplits, classes: list[str]) -> TrainingSplits:
    """`splits` with their labels numbered as `classes` lists the class names."""
    found = list(splits.dataset.classes)
    if found == classes:
        return splits
    number = torch.tensor([classes.index(name) for name in found])
    parts = {name: getattr(splits, name) for name in ("train", "val", "test", "pool")}
    dataset = OmegaConf.merge(splits.dataset, {"classes": classes})
    renamed = {name: Split(s.images, number[s.labels]) for name, s in parts.items()}
    return dataclasses.replace(splits, dataset=dataset, data_classes=found, **renamed)


def with_replay(splits: TrainingSplits, checkpoint: dict[str, Any], cfg: DictConfig) -> TrainingSplits:
    """`splits` whose training images mix the new ones with the checkpoint's (finetune.replay), and
    the memory the new checkpoints keep."""
    knobs = cfg.finetune.replay
    new = splits.train.subset(torch.arange(splits.labeled))
    old = replay.replayed(checkpoint, knobs.size, knobs.seed)
    log.info(
        f"replay: {len(old)} of the checkpoint's training images mixed with the {len(new)} new ones, "
        f"{knobs.share:.0%} of each epoch (finetune.replay)"
    )
    both = Split(torch.cat([old.images, new.images]), torch.cat([old.labels, new.labels]))
    return dataclasses.replace(
        splits,
        train=replay.mixed(new, old, knobs.share),
        labeled=len(new) + len(old),
        memory=replay.class_balanced_sample(both, knobs.size, knobs.seed),
    )


def starting_model(source: Source, classes: list[str], how: str) -> Classifier:
    """The checkpoint's model, with its head as `how` says: kept, grown for new classes (its rows
    kept), or replaced by a fresh one."""
    model, ckpt = source.model(), source.checkpoints[0]
    saved = ckpt["config"]["dataset"]
    if how == "grow":
        log.info(
            f"the head grows from {model.num_classes} to {len(classes)} classes, the old rows kept: {', '.join(classes[model.num_classes :])}"
        )
        model.grow_head(len(classes))
    elif how == "replace":
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
