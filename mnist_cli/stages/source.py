"""The checkpoint a finetune starts from (ckpt=...), and the config made to describe it (inference
loads its models with deploy/loading.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig

from mnist_cli.errors import UserError
from mnist_cli.stages.job import task_overrides
from mnist_cli.training.checkpoint import inherit_config, load_checkpoint, resolve_checkpoint


def load_source(cfg: DictConfig) -> tuple[Path, dict[str, Any]]:
    """The checkpoint of ckpt=... (a run dir, a .ckpt file or latest; supervised or self-supervised)
    and its path. cfg takes the checkpoint's model, and its data set unless the command line chose
    one; cfg.ckpt its path."""
    if isinstance(cfg.ckpt, ListConfig):
        raise UserError(f"{cfg.stage.name} starts from one checkpoint; give ckpt=<run dir or .ckpt>, not a list")
    source = resolve_checkpoint(cfg.ckpt, cfg.outputs_root)
    ckpt = load_checkpoint(source)
    inherit_config(cfg, ckpt, task_overrides())
    cfg.ckpt = str(source)
    return source, ckpt
