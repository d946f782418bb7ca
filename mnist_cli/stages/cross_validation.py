"""Out-of-sample probabilities for images a model would otherwise have trained on: K-fold
cross-validation. The images are dealt into `folds` folds (seeded, class by class); for each, a fresh model of the
run's recipe (model=, optimizer=, trainer=, ...) trains on the others, with a class-balanced
validation share of them, and predicts the fold it never saw. Each fold's training is a run of its
own, in <run>/folds/<k>/ (its metrics, checkpoints and summary)."""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig, OmegaConf

from mnist_cli.audit.images import Labeled
from mnist_cli.data.datasets import Dataset
from mnist_cli.data.split import Split, class_balanced_split, empty_like, val_count
from mnist_cli.deploy.inference import ready
from mnist_cli.errors import UserError
from mnist_cli.loggers.base import Tracker
from mnist_cli.models import build_model
from mnist_cli.run_dir import RunDir
from mnist_cli.selection.model_outputs import probabilities
from mnist_cli.stages.context import StageContext
from mnist_cli.stages.training import TrainingSplits, settled_dataset, train_and_test, training_task
from mnist_cli.training.runtime import setup
from mnist_cli.training.source import Source

log = logging.getLogger(__name__)


def stratified_folds(labels: torch.Tensor, folds: int, seed: int, classes: list[str]) -> torch.Tensor:
    """(N,) each image's fold: each class's images dealt in turn (seeded order), so every fold holds
    its share of every class and every model trains on every class."""
    g = torch.Generator().manual_seed(seed)
    fold_of = torch.empty(len(labels), dtype=torch.long)
    dealt = 0
    for c, name in enumerate(classes):
        members = (labels == c).nonzero().flatten()
        if len(members) < 2:
            raise UserError(
                f"class {name} has {len(members)} labeled image(s); cross-validation needs at least 2 a class: "
                "add some, or leave the class out"
            )
        members = members[torch.randperm(len(members), generator=g)]
        fold_of[members] = (torch.arange(len(members)) + dealt) % folds
        dealt += len(members)
    return fold_of


def out_of_fold_probabilities(cfg: DictConfig, run: RunDir, found: Labeled, folds: int, seed: int) -> torch.Tensor:
    """(N, C) probabilities of every image in `found`, each from the model that did not train on it."""
    classes = len(cfg.dataset.classes)
    fold_of = stratified_folds(found.labels, folds, seed, list(cfg.dataset.classes))
    result = torch.zeros(len(found.labels), classes)
    for k in range(folds):
        held = fold_of == k
        rest = Split(found.images[~held], found.labels[~held])
        share = (
            cfg.dataset.val_size
            if isinstance(cfg.dataset.val_size, float)
            else val_count(cfg.dataset.val_size, len(rest)) / len(rest)
        )
        train, val = class_balanced_split(rest, share, cfg.dataset.split_seed + k)
        test = Split(found.images[held], found.labels[held])
        dataset = settled_dataset(cfg.dataset, Dataset(train, val, test, list(cfg.dataset.classes)))
        fold_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        fold_cfg.dataset = dataset
        splits = TrainingSplits(dataset, train, val, test, empty_like(train), len(train), False, [])
        fold_run = RunDir(run.path / "folds" / str(k + 1))
        fold_run.path.mkdir(parents=True)
        fold_run.write_config(fold_cfg)
        log.info(f"fold {k + 1} of {folds}: training on {len(train)} images, predicting {len(test)}")
        device = setup(fold_cfg)
        model = build_model(fold_cfg.model, classes)
        context = StageContext(fold_cfg, fold_run, [], None, Tracker("none", fold_cfg, fold_run, {}, False), True)
        train_and_test(context, training_task(fold_cfg, model, splits, device), device, splits)
        trained = ready(fold_cfg, Source.load(str(fold_run.best_ckpt), str(run.path)))
        result[held] = probabilities(trained, test.images, fold_cfg.trainer.eval_batch_size)
    return result
