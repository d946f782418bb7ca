"""The flow shared by the training stages (pretrain, finetune): set up, train with the trainer,
test the best checkpoint once, and report."""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

import torch
from omegaconf import DictConfig, OmegaConf

from mnist_cli import distributed
from mnist_cli.batches import BatchPrep
from mnist_cli.checkpoint import load_checkpoint
from mnist_cli.console import print_key_values
from mnist_cli.data import limit_labels, load_split, train_val_split
from mnist_cli.distill import Distillation
from mnist_cli.loggers import epoch_logger
from mnist_cli.models.classifier import Classifier
from mnist_cli.optim import build_optimizer, build_scheduler
from mnist_cli.run_dir import RunDir
from mnist_cli.self_supervised import build_objective
from mnist_cli.trainer import Trainer, pick_device

log = logging.getLogger(__name__)


def setup(cfg: DictConfig) -> torch.device:
    """Seed every random number generator, choose deterministic kernels if asked, join the
    torchrun process group if there is one, and pick the device; call before building a model."""
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    if cfg.trainer.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for determinism
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    torch.manual_seed(cfg.trainer.seed)
    if distributed.world_size() > 1:
        return distributed.start(cfg.trainer.device)
    return pick_device(cfg.trainer.device)


def train_and_test(
    cfg: DictConfig,
    run: RunDir,
    model: Classifier,
    device: torch.device,
    resume: dict[str, Any] | None,
    on_epoch_end: Callable[[dict[str, Any], Classifier], None] | None = None,
    distillation: Distillation | None = None,
) -> dict[str, Any]:
    train, val = train_val_split(load_split(cfg.dataset, "train"), cfg.dataset.val_size, cfg.dataset.split_seed)
    supervised = cfg.objective.name == "supervised"
    if supervised:  # self-supervised pretraining uses every training image
        train = limit_labels(train, cfg.dataset.labels_per_class, cfg.dataset.label_fraction, cfg.dataset.split_seed)
    test = load_split(cfg.dataset, "test")  # read now so a missing file fails before training
    train, val = train.to(device), val.to(device)
    model.to(device, memory_format=torch.channels_last)
    prep = BatchPrep(cfg.dataset)
    trainer = Trainer(cfg.trainer, device, prep, None if supervised else build_objective(cfg.objective, cfg.dataset, prep), distillation)
    optimizer = build_optimizer(cfg.optimizer, model, OmegaConf.select(cfg, "finetune.layer_decay", default=1.0))
    scheduler = build_scheduler(cfg.scheduler, optimizer, trainer.steps_per_epoch(len(train)), cfg.trainer.epochs)
    run.write_config(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info(
        f"{cfg.stage.name} {cfg.model.name} ({n_params:,} parameters, {n_trainable:,} trainable) on {device}"
        + (f" x {distributed.world_size()} processes" if distributed.world_size() > 1 else "") + ": "
        f"{len(train)} train / {len(val)} val images from {cfg.dataset.name}, {cfg.trainer.epochs} epochs"
    )
    info = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "model_name": cfg.model.name,
        "num_classes": model.num_classes,
        "objective": cfg.objective.name,
    }
    try:
        with epoch_logger(cfg.logger, run) as log_epoch:
            callbacks = [c for c in (log_epoch, on_epoch_end) if c is not None]

            def after_epoch(row: dict[str, Any], trained: Classifier) -> None:
                for callback in callbacks:
                    callback(row, trained)

            fit = trainer.fit(model, train, val, optimizer, scheduler, run, info, resume, after_epoch)
    finally:
        distributed.stop()
    if not run.writable:  # another rank of a torchrun job: rank 0 tests and reports
        return {"best_val_acc": fit.best_val_acc}

    model.load_state_dict(load_checkpoint(run.best_ckpt)["model"])
    tested = trainer.validate(model, train, test.to(device))  # self-supervised: k-NN accuracy
    train_time = sum(row["epoch_time_s"] for row in fit.history)
    target = cfg.trainer.target_accuracy
    reached = [row["elapsed_s"] for row in fit.history if target is not None and row["val_acc"] >= target]
    results = {
        "device": str(device),
        "processes": distributed.world_size(),
        "objective": cfg.objective.name,
        "train_images": len(train),
        "epochs_run": len(fit.history),
        "stopped_early": fit.stopped_early,
        "best_epoch": fit.best_epoch,
        "best_val_acc": fit.best_val_acc,
        "test_loss": tested.loss,
        "test_acc": tested.acc,
        "precision": trainer.precision,
        "train_time_s": round(train_time, 3),
        "target_accuracy": target,
        "time_to_target_s": round(reached[0], 3) if reached else None,
        "images_per_s": round(sum(r["images_per_s"] * r["epoch_time_s"] for r in fit.history) / train_time, 1),
        "parameters": n_params,
        "checkpoints": {"best": str(run.best_ckpt), "last": str(run.last_ckpt)},
    }
    print_key_values(
        f"{cfg.stage.name} finished: {run.path}",
        {
            "best epoch": f"{fit.best_epoch} of {len(fit.history)}",
            "val accuracy": fit.best_val_acc,
            "test accuracy": tested.acc,
            "test loss": tested.loss,
            "train time": f"{train_time:.1f} s",
            "images/s": f"{results['images_per_s']:.0f}",
            "device": f"{device} ({trainer.precision})",
            **({f"time to {target:.1%} val": f"{reached[0]:.1f} s" if reached else "not reached"} if target else {}),
        },
    )
    return results
