"""The objectives: what the trainer learns. The loop asks a task for the loss of a batch (and a count
of correct answers) and for the validation measure; it never knows which task it runs.

`objective=<name>` picks the task: conf/objective/<name>.yaml names its class here with `_target_`
(supervised.Supervised, contrastive.Contrastive, mae.MaskedReconstruction), its other keys are the
class's arguments; the run gives the classifier to train, the batch preparation and the trainer's
settings. A task trains `task.model`: the classifier, or the classifier inside the task's own
learner (a self-supervised objective's heads). Adding an objective is its module here and its YAML file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mnist_cli.targets import build

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from mnist_cli.data.batches import BatchPrep
    from mnist_cli.models.classifier import Classifier
    from mnist_cli.objectives.base import Task


def build_task(cfg: DictConfig, classifier: Classifier, prep: BatchPrep) -> Task:
    """The task of the run's objective (cfg is the whole run config) around `classifier`."""
    return build(cfg.objective, classifier=classifier, prep=prep, trainer=cfg.trainer)
