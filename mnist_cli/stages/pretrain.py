"""`mnist pretrain`: train a fresh model, on the labels (objective=supervised) or without them
(objective=contrastive or mae: the classifier inside the task's own learner; see objectives/)."""

from __future__ import annotations

from typing import Any

from mnist_cli.models import build_model
from mnist_cli.stages.context import StageContext
from mnist_cli.stages.training import read_splits, train_and_test, training_task
from mnist_cli.training.runtime import setup


def run(ctx: StageContext) -> dict[str, Any]:
    device = setup(ctx.cfg)
    splits = read_splits(ctx.cfg)  # first: a folder of images names the classes the model learns
    cfg = ctx.settle(dataset=splits.dataset)
    model = build_model(cfg.model, len(cfg.dataset.classes))
    return train_and_test(ctx, training_task(cfg, model, splits, device), device, splits)
