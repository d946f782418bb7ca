"""The flow shared by the training stages (pretrain, finetune): read the data, build the task,
optimizer and schedule, train with the trainer, test the best checkpoint once, and report."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mnist_cli.data.batches import BatchPrep
from mnist_cli.data.datasets import Dataset, load_dataset
from mnist_cli.data.split import Split, empty_like, repeat, split_labels
from mnist_cli.errors import UserError
from mnist_cli.evaluation.inference import outputs
from mnist_cli.evaluation.metrics import fit_temperature
from mnist_cli.models.lora import merged_state_dict
from mnist_cli.report.console import print_key_values, training_progress
from mnist_cli.run_dir import RunDir
from mnist_cli.training import distributed
from mnist_cli.training.checkpoint import load_checkpoint, save_checkpoint
from mnist_cli.training.loggers import epoch_logger
from mnist_cli.training.optim import build_optimizer, build_scheduler
from mnist_cli.training.tasks import add_unlabeled, build_task
from mnist_cli.training.tasks.base import Task
from mnist_cli.training.trainer import Trainer

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """What a training stage reads: `train`, what the loop draws its batches from (the labeled
    images; when semi-supervised, repeated whole until an epoch's steps draw at least as many pool
    images as the pool holds), `val`, `test`, and `pool`, the training images whose labels are not
    used (empty unless labels are limited; never a validation image); `skipped`, the files passed
    over as unreadable."""

    train: Split
    val: Split
    test: Split
    pool: Split
    labeled: int  # labeled training images, each counted once
    semi_supervised: bool
    skipped: list[str]


def read_data(cfg: DictConfig) -> TrainingData:
    """The data set's splits; a data set that names its classes or normalization only by its files
    (null in the config) gets them written into cfg.dataset, and so into the run's config and checkpoints."""
    data = cfg.dataset
    found = load_dataset(data, cfg.preprocess)
    settle(data, found)
    train, val = found.train, found.val
    if cfg.objective.name == "supervised":  # self-supervised pretraining uses every training image
        train, pool = split_labels(train, data.labels_per_class, data.label_fraction, data.split_seed)
    else:
        pool = empty_like(train)
    labeled = len(train)
    semi_supervised = cfg.semi_supervised.name != "none"
    if semi_supervised:  # whole copies of the labeled images, enough to go with one pass over the pool
        train = repeat(train, math.ceil(len(pool) / cfg.semi_supervised.ratio))
    return TrainingData(train, val, found.test, pool, labeled, semi_supervised, found.skipped)


def settle(data: DictConfig, found: Dataset) -> None:
    """Check that every class has training images, and fill in the classes and the normalization
    the config leaves to the files (null)."""
    counts = torch.bincount(found.train.labels, minlength=len(found.classes))
    if not len(found.train) or not len(found.val):
        raise UserError(
            f"{data.name} at {data.root}: no training images to learn from; add some (see dataset={data.name})"
        )
    if bool((counts == 0).any()):
        missing = [name for name, n in zip(found.classes, counts.tolist()) if n == 0]
        raise UserError(f"class {', '.join(missing)} of dataset.classes has no training images; add some or drop it")
    data.classes = found.classes
    if data.mean is None or data.std is None:  # measured once, here: the run's config keeps them
        pixels = found.train.images.float().div_(255)
        data.mean = round(float(pixels.mean()), 4) if data.mean is None else data.mean
        data.std = round(float(pixels.std()), 4) if data.std is None else data.std


def training_task(
    cfg: DictConfig, model: nn.Module, pool: Split | None, wrap_task: Callable[[Task], Task] | None = None
) -> Task:
    """The objective's task for `model`, changed by `wrap_task` (distillation), and extended by
    cfg.semi_supervised to learn from `pool` (on the training device; None: the labels only)."""
    prep = BatchPrep(cfg.dataset)
    task = build_task(cfg, model, prep)
    task = wrap_task(task) if wrap_task else task
    return add_unlabeled(cfg, task, prep, pool) if pool is not None else task


def train_and_test(
    cfg: DictConfig,
    run: RunDir,
    model: nn.Module,
    device: torch.device,
    resume: dict[str, Any] | None,
    data: TrainingData,
    on_epoch_end: Callable[[dict[str, Any], nn.Module], None] | None = None,
    wrap_task: Callable[[Task], Task] | None = None,
) -> dict[str, Any]:
    """Train `model` (the objective's learner) on `data` as cfg says; `on_epoch_end(metrics row,
    model)` is called after each epoch besides the logger; `wrap_task` may change the task (distillation)."""
    train, val = data.train.to(device), data.val.to(device)
    model.to(device, memory_format=torch.channels_last)
    task = training_task(cfg, model, data.pool.to(device) if data.semi_supervised else None, wrap_task)
    trainer = Trainer(cfg.trainer, device, task, training_progress, merged_state_dict)  # best.ckpt: LoRA merged
    length = trainer.length(len(train))
    optimizer = build_optimizer(cfg.optimizer, model, OmegaConf.select(cfg, "finetune.layer_decay", default=1.0))
    scheduler = build_scheduler(cfg.scheduler, optimizer, length.steps_per_epoch, length.total_steps)
    run.write_config(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info(
        f"{cfg.stage.name} {cfg.model.name} ({n_params:,} parameters, {n_trainable:,} trainable) on {device}"
        + (f" x {distributed.world_size()} processes" if distributed.world_size() > 1 else "")
        + ": "
        f"{data.labeled} train / {len(val)} val images from {cfg.dataset.name}, {length.epochs} epochs"
        + (
            f" ({length.total_steps} steps)"
            if length.total_steps != cfg.trainer.epochs * length.steps_per_epoch
            else ""
        )
        + (f", {len(data.pool)} more without labels ({cfg.semi_supervised.name})" if data.semi_supervised else "")
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
    if skipped := run.write_skipped(data.skipped):
        warnings.append(skipped)
    info = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "model_name": cfg.model.name,
        "num_classes": model.num_classes,
        "objective": cfg.objective.name,
    }
    try:
        with epoch_logger(cfg.logger, run) as log_epoch:
            callbacks = [c for c in (log_epoch, on_epoch_end) if c is not None]

            def after_epoch(row: dict[str, Any], trained: nn.Module) -> None:
                for callback in callbacks:
                    callback(row, trained)

            fit = trainer.fit(model, train, val, optimizer, scheduler, run, info, resume, after_epoch)
    finally:
        distributed.stop()
    if not run.writable:  # another rank of a torchrun job: rank 0 tests and reports
        return {"best_val_acc": fit.best_val_acc}

    best = load_checkpoint(run.best_ckpt)
    model.load_state_dict(best["model"])
    fits_temperature = cfg.calibrate and cfg.objective.name == "supervised"
    calibration = calibrate(cfg, trainer, model, val, run, best) if fits_temperature else {}
    tested = trainer.validate(model, train, data.test.to(device))  # self-supervised: k-NN accuracy
    train_time = sum(row["epoch_time_s"] for row in fit.history)
    target = cfg.trainer.target_accuracy
    reached = [row["elapsed_s"] for row in fit.history if target is not None and row["val_acc"] >= target]
    results = {
        "dataset": cfg.dataset.name,
        "classes": list(cfg.dataset.classes),
        "device": str(device),
        "processes": distributed.world_size(),
        "objective": cfg.objective.name,
        "train_images": data.labeled,
        **({"skipped_files": len(data.skipped)} if data.skipped else {}),
        **(
            {"unlabeled_images": len(data.pool), "semi_supervised": cfg.semi_supervised.name}
            if data.semi_supervised
            else {}
        ),
        "batch_size": cfg.trainer.batch_size,
        "effective_batch_size": trainer.effective_batch_size,
        "epochs_run": len(fit.history),
        "steps_run": sum(length.steps_in(row["epoch"]) for row in fit.history),
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
        "time_to_target_s": round(reached[0], 3) if reached else None,
        "images_per_s": round(sum(r["images_per_s"] * r["epoch_time_s"] for r in fit.history) / train_time, 1),
        "parameters": n_params,
        "checkpoints": {"best": str(run.best_ckpt), "last": str(run.last_ckpt)},
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
            **({f"time to {target:.1%} val": f"{reached[0]:.1f} s" if reached else "not reached"} if target else {}),
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
