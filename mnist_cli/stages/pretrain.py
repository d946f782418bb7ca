"""`mnist pretrain`: train a fresh model, on the labels (objective=supervised) or without them
(objective=contrastive or mae: the classifier inside the task's own learner; see training/tasks/)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from mnist_cli.models import build_model
from mnist_cli.run_dir import RunDir
from mnist_cli.stages.train_and_test import read_data, train_and_test
from mnist_cli.training.runtime import setup
from mnist_cli.training.tasks import build_learner


def run(cfg: DictConfig, run: RunDir, resume: dict[str, Any] | None) -> dict[str, Any]:
    device = setup(cfg)
    data = read_data(cfg)  # first: a folder of images names the classes the model learns
    model = build_learner(cfg.objective, build_model(cfg.model, len(cfg.dataset.classes)))
    return train_and_test(cfg, run, model, device, resume, data)
