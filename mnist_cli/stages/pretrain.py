"""`mnist pretrain`: train a fresh model, on the labels (objective=supervised) or without them
(objective=contrastive or mae: the classifier's backbone with the objective's own heads; see
self_supervised.py)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from mnist_cli.models import build_model
from mnist_cli.run_dir import RunDir
from mnist_cli.self_supervised import build_learner
from mnist_cli.stages.training import setup, train_and_test


def run(cfg: DictConfig, run: RunDir, resume: dict[str, Any] | None) -> dict[str, Any]:
    device = setup(cfg)
    model = build_model(cfg.model, len(cfg.dataset.classes))
    if cfg.objective.name != "supervised":  # the backbone with the objective's own heads
        model = build_learner(cfg.objective, model)
    return train_and_test(cfg, run, model, device, resume)
