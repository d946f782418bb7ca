"""A trained classifier for inference (eval, predict, serve, explain, export): the model of ckpt=...
(a run dir, a .ckpt file, latest), or an ensemble of several (ckpt=[a,b,c] or a sweep's folder),
each with the temperature its training fitted, on its device and with the precision it runs in.
Plain arguments (the config and the command line's overrides), so it works in a notebook or a test
as in a Hydra job."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig
from torch import nn

from mnist_cli.data.batches import BatchPrep
from mnist_cli.errors import UserError
from mnist_cli.models.calibrated import Calibrated
from mnist_cli.models.ensemble import Ensemble
from mnist_cli.training.checkpoint import (
    inherit_config,
    load_checkpoint,
    load_classifier_checkpoint,
    model_from_checkpoint,
    resolve_checkpoints,
)
from mnist_cli.training.runtime import autocast, pick_precision, setup


@dataclass
class Inference:
    """A classifier ready to answer: in eval mode on `device`, run under `precision`."""

    model: nn.Module  # one checkpoint's (calibrated) model, or an Ensemble
    sources: list[Path]  # the checkpoints it came from
    device: torch.device
    precision: str  # fp32, bf16 or fp16 (trainer.precision, `auto` decided for the device)
    prep: BatchPrep  # normalization of uint8 digits for this model

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.precision)


def load_inference(
    cfg: DictConfig,
    overrides: list[str],
    threads: int | None = None,
    cpu_float32: bool = False,
    features_only: bool = False,
) -> Inference:
    """Set up the process (runtime.setup: seeds, threads, device), load the classifier of ckpt=...
    (load_classifier, which says what `features_only` allows) and put it on the device in eval
    mode. `threads`: torch's CPU threads, over trainer.num_threads; `cpu_float32`: on the CPU in
    float32 whatever the config says (export)."""
    device = setup(cfg)  # seeds, threads, deterministic kernels; the device trainer.device names
    if cpu_float32:
        device = torch.device("cpu")
    if threads:
        torch.set_num_threads(threads)
    sources, model = load_classifier(cfg, overrides, features_only)
    precision = "fp32" if cpu_float32 else pick_precision(cfg.trainer.precision, device)
    return Inference(model.to(device).eval(), sources, device, precision, BatchPrep(cfg.dataset))


def calibrated(cfg: DictConfig, model: nn.Module, ckpt: dict[str, Any]) -> nn.Module:
    """The model with the temperature its training fitted (calibrate=true and there is one)."""
    return Calibrated(model, ckpt["temperature"]) if cfg.calibrate and "temperature" in ckpt else model


def load_classifier(cfg: DictConfig, overrides: list[str], features_only: bool = False) -> tuple[list[Path], nn.Module]:
    """The trained classifier of ckpt=... and the checkpoints it came from: one checkpoint's model,
    or an Ensemble (ckpt=[a,b,c] or a sweep's folder), each calibrated (models/calibrated.py). cfg
    takes the first one's model and data set (as load_source) and cfg.ckpt the path or list of
    paths; every member must know the same classes and normalize its input alike. `overrides`:
    the command line's key=value overrides (what it chose instead of the checkpoint's).
    `features_only`: a self-supervised checkpoint too (its backbone's features; its head untrained)."""
    given = cfg.ckpt
    paths = resolve_checkpoints(list(given) if isinstance(given, ListConfig) else given, cfg.outputs_root)
    ckpts = [load_checkpoint(path) if features_only else load_classifier_checkpoint(path) for path in paths]
    inherit_config(cfg, ckpts[0], overrides)
    if cfg.dataset.classes is None:  # a folder of images, labelled with the classes the model knows
        cfg.dataset.classes = ckpts[0]["config"]["dataset"]["classes"]
    for path, ckpt in zip(paths[1:], ckpts[1:]):
        data = ckpt["config"]["dataset"]
        if list(data["classes"]) != list(cfg.dataset.classes) or [data["mean"], data["std"]] != [
            cfg.dataset.mean,
            cfg.dataset.std,
        ]:
            raise UserError(
                f"{path} was trained on {data['name']} (classes {list(data['classes'])}, mean {data['mean']}, "
                f"std {data['std']}), {paths[0]} on {cfg.dataset.name}: an ensemble's members share their data set"
            )
    cfg.ckpt = str(paths[0]) if len(paths) == 1 else [str(p) for p in paths]
    models = [calibrated(cfg, model_from_checkpoint(ckpt), ckpt) for ckpt in ckpts]
    return paths, models[0] if len(models) == 1 else Ensemble(models)
