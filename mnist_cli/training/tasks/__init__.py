"""Training tasks: what the trainer learns. The loop asks a task for the loss of a batch (and a count
of correct answers) and for the validation measure; it never knows which task it runs.

`objective=<name>` picks the task. Each task module defines
    build_learner(classifier, objective_cfg) -> the model to train (the classifier, or the
                                                classifier with the task's own heads)
    build_task(cfg, learner, prep)           -> the Task
Adding an objective is its module, one line here and conf/objective/<name>.yaml.

`semi_supervised=<name>` (other than none) wraps the supervised task in a method that also learns
from the unlabeled pool; its module defines
    build_semi_supervised(cfg, task, prep, pool) -> the Task
This file imports no torch, so the config checks can read the objective registry.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omegaconf import DictConfig
    from torch import nn

    from mnist_cli.data.batches import BatchPrep
    from mnist_cli.data.split import Split
    from mnist_cli.models.classifier import Classifier
    from mnist_cli.training.tasks.base import Task

TASKS = {
    "supervised": "mnist_cli.training.tasks.classification",
    "contrastive": "mnist_cli.training.tasks.contrastive",
    "mae": "mnist_cli.training.tasks.mae",
}
SEMI_SUPERVISED = {
    "fixmatch": "mnist_cli.training.tasks.fixmatch",
}


def build_learner(cfg: DictConfig, classifier: Classifier) -> nn.Module:
    """The model `objective=cfg.name` trains, around `classifier`."""
    return importlib.import_module(TASKS[cfg.name]).build_learner(classifier, cfg)


def build_task(cfg: DictConfig, learner: nn.Module, prep: BatchPrep) -> Task:
    """The task of the run's objective (cfg is the whole run config)."""
    return importlib.import_module(TASKS[cfg.objective.name]).build_task(cfg, learner, prep)


def add_unlabeled(cfg: DictConfig, task: Task, prep: BatchPrep, pool: Split) -> Task:
    """`task` (supervised) extended to learn from `pool` by semi_supervised=cfg.semi_supervised.name."""
    return importlib.import_module(SEMI_SUPERVISED[cfg.semi_supervised.name]).build_semi_supervised(
        cfg, task, prep, pool
    )
