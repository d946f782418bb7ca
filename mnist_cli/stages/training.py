"""The flow shared by the training stages (pretrain, finetune): read the data set's splits, build the
task (the objective's, maybe distilling from a teacher and learning from unlabeled images too),
train it with the trainer, test the best checkpoint once, and report."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mnist_cli.data.batches import BatchPrep
from mnist_cli.data.chosen import split_listed
from mnist_cli.data.datasets import IDX_READER, Dataset, load_dataset
from mnist_cli.data.split import Split, empty_like, repeat, split_labels
from mnist_cli.errors import UserError
from mnist_cli.evaluation.inference import outputs
from mnist_cli.evaluation.metrics import fit_temperature
from mnist_cli.models.classifier import Classifier
from mnist_cli.models.lora import merged_state_dict
from mnist_cli.objectives import build_task
from mnist_cli.objectives.base import Task
from mnist_cli.objectives.distillation import Distillation
from mnist_cli.report.console import print_key_values, training_progress
from mnist_cli.run_dir import RunDir
from mnist_cli.stages.context import StageContext
from mnist_cli.targets import build
from mnist_cli.training import distributed
from mnist_cli.training.checkpoint import load_checkpoint, save_checkpoint
from mnist_cli.training.optim import build_optimizer, build_scheduler
from mnist_cli.training.trainer import Trainer

log = logging.getLogger(__name__)


@dataclass
class TrainingSplits:
    """What a training stage reads: `train`, what the loop draws its batches from (the labeled
    images; when semi-supervised, repeated whole until an epoch's steps draw at least as many pool
    images as the pool holds), `val`, `test`, and `pool`, the training images whose labels are not
    used (empty unless labels are limited; never a validation image); `skipped`, the files passed
    over as unreadable; `dataset`, the data set's config with what its files settle (classes,
    normalization)."""

    dataset: DictConfig
    train: Split
    val: Split
    test: Split
    pool: Split
    labeled: int  # labeled training images, each counted once
    semi_supervised: bool
    skipped: list[str]
    memory: Split | None = None  # images the checkpoints keep for a later finetune's replay (data/replay.py)
    data_classes: list[str] | None = None  # the files' own classes, when the run numbers them otherwise (finetune)
    holdout: dict[str, Any] | None = None  # the data set whose test split a finetune's gate measures forgetting on


def read_splits(
    cfg: DictConfig, dataset: DictConfig | None = None, preprocess: DictConfig | None = None
) -> TrainingSplits:
    """The splits of `dataset`, its image files made inputs by `preprocess` (by default cfg's), for
    the run cfg describes."""
    dataset = cfg.dataset if dataset is None else dataset
    found = load_dataset(dataset, cfg.preprocess if preprocess is None else preprocess)
    train, val = found.train, found.val
    if cfg.objective.name != "supervised":  # self-supervised pretraining uses every training image
        pool = empty_like(train)
    elif OmegaConf.select(dataset, "labeled") is not None:
        if dataset.reader._target_ != IDX_READER:
            raise UserError(
                f"dataset.labeled names images of an IDX training file; dataset={dataset.name} is labeled by its "
                "own files (label a folder with `mnist label`)"
            )
        train, pool = split_listed(train, val, dataset.labeled, dataset.val_size, dataset.split_seed)
    else:
        train, pool = split_labels(train, dataset.labels_per_class, dataset.label_fraction, dataset.split_seed)
    labeled = len(train)
    semi_supervised = cfg.semi_supervised.name != "none"
    if semi_supervised:  # whole copies of the labeled images, enough to go with one pass over the pool
        train = repeat(train, math.ceil(len(pool) / cfg.semi_supervised.ratio))
    settled = settled_dataset(dataset, found)
    return TrainingSplits(settled, train, val, found.test, pool, labeled, semi_supervised, found.skipped)


def settled_dataset(dataset: DictConfig, found: Dataset) -> DictConfig:
    """`dataset` with the classes the files give, and the normalization measured on the training
    images where it leaves it to the files (null); every class must have training images."""
    counts = torch.bincount(found.train.labels, minlength=len(found.classes))
    if not len(found.train) or not len(found.val):
        raise UserError(
            f"{dataset.name} at {dataset.root}: no training images to learn from; add some (see dataset={dataset.name})"
        )
    if bool((counts == 0).any()):
        missing = [name for name, n in zip(found.classes, counts.tolist()) if n == 0]
        raise UserError(f"class {', '.join(missing)} of dataset.classes has no training images; add some or drop it")
    settled = OmegaConf.create(OmegaConf.to_container(dataset))
    settled.classes = found.classes
    if dataset.mean is None or dataset.std is None:  # measured once, here: the run's config keeps them
        pixels = found.train.images.float().div_(255)
        settled.mean = round(float(pixels.mean()), 4) if dataset.mean is None else dataset.mean
        settled.std = round(float(pixels.std()), 4) if dataset.std is None else dataset.std
    return settled


def training_task(
    cfg: DictConfig,
    classifier: Classifier,
    splits: TrainingSplits,
    device: torch.device,
    teacher: nn.Module | None = None,
) -> Task:
    """The objective's task for `classifier`, distilling from `teacher` when given, and extended by
    cfg.semi_supervised to learn from the unlabeled pool (moved to `device`)."""
    prep = BatchPrep(cfg.dataset)
    task = build_task(cfg, classifier, prep)
    if teacher is not None:
        task = Distillation(task, teacher, cfg.distill.alpha, cfg.distill.temperature)
    if splits.semi_supervised:
        task = build(
            cfg.semi_supervised,
            task=task,
            prep=prep,
            pool=splits.pool.to(device),
            labeled=splits.train.subset(torch.arange(splits.labeled)),
        )
    return task


def train_and_test(
    ctx: StageContext,
    task: Task,
    device: torch.device,
    splits: TrainingSplits,
    on_epoch_end: Callable[[dict[str, Any], nn.Module], None] | None = None,
) -> dict[str, Any]:
    """Train `task.model` on `splits` as the settled config says; `on_epoch_end(metrics row, model)`
    is called after each epoch besides the tracker."""
    cfg, run = ctx.cfg, ctx.run
    model = task.model.to(device, memory_format=torch.channels_last)
    train, val = splits.train.to(device), splits.val.to(device)
    trainer = Trainer(cfg.trainer, device, task, training_progress, merged_state_dict)  # best.ckpt: LoRA merged
    length = trainer.length(len(train))
    optimizer = build_optimizer(cfg.optimizer, model, OmegaConf.select(cfg, "finetune.layer_decay", default=1.0))
    scheduler = build_scheduler(cfg.scheduler, optimizer, length.steps_per_epoch, length.total_steps)
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info(
        f"{cfg.stage.name} {cfg.model.name} ({n_params:,} parameters, {n_trainable:,} trainable) on {device}"
        + (f" x {distributed.world_size()} processes" if distributed.world_size() > 1 else "")
        + ": "
        f"{splits.labeled} train / {len(val)} val images from {cfg.dataset.name}, {length.epochs} epochs"
        + (
            f" ({length.total_steps} steps)"
            if length.total_steps != cfg.trainer.epochs * length.steps_per_epoch
            else ""
        )
        + (f", {len(splits.pool)} more without labels ({cfg.semi_supervised.name})" if splits.semi_supervised else "")
        + (f", {trainer.effective_batch_size} images per step" if cfg.trainer.accumulate_steps > 1 else "")
    )
    warnings = []
    if length.total_steps < cfg.trainer.warn_under_steps:
        warnings.append(
            f"this run makes only {length.total_steps} optimizer steps ({length.epochs} epochs of "
            f"{length.steps_per_epoch}: {len(train)} images in batches of {trainer.effective_batch_size}), too few "
            "to learn much; raise "
            + ("trainer.max_steps" if cfg.trainer.max_steps else "trainer.epochs or trainer.min_steps")
            + ", or lower trainer.batch_size"
        )
        log.warning(warnings[-1])
    if skipped := run.write_skipped(splits.skipped):
        warnings.append(skipped)
    info = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "model_name": cfg.model.name,
        "num_classes": model.num_classes,
        "objective": cfg.objective.name,
        **({"memory": {"images": splits.memory.images, "labels": splits.memory.labels}} if splits.memory else {}),
        **({"data_classes": splits.data_classes} if splits.data_classes else {}),
        **({"holdout": splits.holdout} if splits.holdout else {}),
    }

    def after_epoch(row: dict[str, Any], trained: nn.Module) -> None:
        ctx.tracker.log_epoch(row)
        if on_epoch_end is not None:
            on_epoch_end(row, trained)

    timeline = {"training_started_at": time.time()}  # wall-clock moments, to set against the process's own
    try:
        fit = trainer.fit(model, train, val, optimizer, scheduler, run, info, ctx.resume, after_epoch)
    finally:
        distributed.stop()
    timeline["training_ended_at"] = time.time()
    if not run.writable:  # another rank of a torchrun job: rank 0 tests and reports
        return {"best_val_acc": fit.best_val_acc}

    warnings += [f"epoch {row['epoch']}: {said}" for row in fit.history for said in task.epoch_warnings(row)]
    best = load_checkpoint(run.best_ckpt)
    model.load_state_dict(best["model"])
    fits_temperature = cfg.calibrate and cfg.objective.name == "supervised"
    calibration = calibrate(cfg, trainer, model, val, run, best) if fits_temperature else {}
    tested = trainer.validate(model, train, splits.test.to(device))  # self-supervised: k-NN accuracy
    timeline["tested_at"] = time.time()
    train_time = sum(row["epoch_time_s"] for row in fit.history)
    target = cfg.trainer.target_accuracy
    reached = next((row for row in fit.history if "target_step" in row), None)
    results = {
        "dataset": cfg.dataset.name,
        "classes": list(cfg.dataset.classes),
        "device": str(device),
        "processes": distributed.world_size(),
        "objective": cfg.objective.name,
        "train_images": splits.labeled,
        **({"skipped_files": len(splits.skipped)} if splits.skipped else {}),
        **(
            {"unlabeled_images": len(splits.pool), "semi_supervised": cfg.semi_supervised.name}
            if splits.semi_supervised
            else {}
        ),
        "batch_size": cfg.trainer.batch_size,
        "effective_batch_size": trainer.effective_batch_size,
        "epochs_run": len(fit.history),
        "steps_run": sum(row.get("steps", length.steps_in(row["epoch"])) for row in fit.history),
        "stopped_early": fit.stopped_early,
        "stopped_at_target": fit.stopped_at_target,
        "best_epoch": fit.best_epoch,
        "selected_by": cfg.trainer.select,
        "ema_decay": cfg.trainer.ema_decay if cfg.trainer.ema else None,
        "best_val_acc": fit.best_val_acc,
        **calibration,
        "test_loss": tested.loss,
        "test_acc": tested.acc,
        "precision": trainer.precision,
        "train_time_s": round(train_time, 3),
        "target_accuracy": target,
        "time_to_target_s": round(reached["target_elapsed_s"], 3) if reached else None,
        "target_step": reached["target_step"] if reached else None,
        "images_per_s": round(sum(r["images_per_s"] * r["epoch_time_s"] for r in fit.history) / train_time, 1),
        "parameters": n_params,
        "checkpoints": {"best": str(run.best_ckpt), "last": str(run.last_ckpt)},
        "timeline": {key: round(at, 3) for key, at in timeline.items()},
        **({"warnings": warnings} if warnings else {}),
    }
    print_key_values(
        f"{cfg.stage.name} finished: {run.path}",
        {
            "best epoch": f"{fit.best_epoch} of {len(fit.history)} (by {cfg.trainer.select}"
            + (f", moving average {cfg.trainer.ema_decay})" if cfg.trainer.ema else ")"),
            "val accuracy": fit.best_val_acc,
            "test accuracy": tested.acc,
            "test loss": tested.loss,
            **({"temperature": f"{calibration['temperature']:.3f} (fitted on val)"} if calibration else {}),
            "train time": f"{train_time:.1f} s",
            "images/s": f"{results['images_per_s']:.0f}",
            "device": f"{device} ({trainer.precision})",
            **(
                {
                    f"time to {target:.1%} val": f"{reached['target_elapsed_s']:.1f} s (step {reached['target_step']})"
                    if reached
                    else "not reached"
                }
                if target
                else {}
            ),
        },
    )
    return results


def calibrate(
    cfg: DictConfig, trainer: Trainer, model: nn.Module, val: Split, run: RunDir, best: dict[str, Any]
) -> dict[str, float]:
    """Fit the temperature of the best weights (`model`, loaded from `best`: best.ckpt) on the
    validation split (temperature scaling) and keep it in best.ckpt, where eval, predict, serve,
    explain and export find it; its NLL before and after."""
    prep = BatchPrep(cfg.dataset)
    model.eval()
    with trainer.autocast():
        logits = outputs(lambda x: model(prep(x, train=False)), val.images, cfg.trainer.eval_batch_size).cpu()
    labels = val.labels.cpu()
    temperature = fit_temperature(logits, labels)
    save_checkpoint(run.best_ckpt, {**best, "temperature": temperature})
    return {
        "temperature": round(temperature, 4),
        "val_nll": F.cross_entropy(logits, labels).item(),
        "val_nll_calibrated": F.cross_entropy(logits / temperature, labels).item(),
    }
