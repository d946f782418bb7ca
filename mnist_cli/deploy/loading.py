"""A trained classifier for inference (eval, predict, serve, explain): the model of ckpt=... (a run
dir, a .ckpt file, latest), or an ensemble of several (ckpt=[a,b,c] or a sweep's folder), each with
the temperature its training fitted. Plain arguments (the config and the command line's overrides),
so it works in a notebook or a test as in a Hydra job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig
from torch import nn

from mnist_cli.errors import UserError
from mnist_cli.models.calibrated import Calibrated
from mnist_cli.models.ensemble import Ensemble
from mnist_cli.training.checkpoint import (
    inherit_config,
    load_classifier_checkpoint,
    model_from_checkpoint,
    resolve_checkpoints,
)


def calibrated(cfg: DictConfig, model: nn.Module, ckpt: dict[str, Any]) -> nn.Module:
    """The model with the temperature its training fitted (calibrate=true and there is one)."""
    return Calibrated(model, ckpt["temperature"]) if cfg.calibrate and "temperature" in ckpt else model


def load_classifier(cfg: DictConfig, overrides: list[str]) -> tuple[list[Path], nn.Module]:
    """The trained classifier of ckpt=... and the checkpoints it came from: one checkpoint's model,
    or an Ensemble (ckpt=[a,b,c] or a sweep's folder), each calibrated (models/calibrated.py). cfg
    takes the first one's model and data set (as load_source) and cfg.ckpt the path or list of
    paths; every member must know the same classes and normalize its input alike. `overrides`:
    the command line's key=value overrides (what it chose instead of the checkpoint's)."""
    given = cfg.ckpt
    paths = resolve_checkpoints(list(given) if isinstance(given, ListConfig) else given, cfg.outputs_root)
    ckpts = [load_classifier_checkpoint(path) for path in paths]
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
