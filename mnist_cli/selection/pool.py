"""The unlabeled images `mnist select` ranks: a folder of image files, or the training split of an
IDX data set less the images whose labels a checkpoint trained on; and the images already labeled
(what k_center keeps its distance from)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from mnist_cli.data.chosen import file_positions, read_positions
from mnist_cli.data.datasets import IDX_READER
from mnist_cli.data.images import SUFFIXES, load_grayscale, preprocess
from mnist_cli.data.split import Split, split_labels
from mnist_cli.errors import UserError


@dataclass
class Pool:
    images: torch.Tensor  # (N, 1, 28, 28) uint8: the model's inputs
    rows: list[dict[str, Any]]  # per image, what names it: {"file": path} or {"split": "train", "index": i}
    labeled: torch.Tensor  # (M, 1, 28, 28) uint8: images already labeled (M may be 0)
    skipped: list[str]  # "<file>: <why>" of each file that is not a readable image
    excluded: int  # images left out: labeled already, or (IDX pool) the validation split

    def __len__(self) -> int:
        return len(self.images)


def names_under(folder: Path) -> set[str]:
    """The names of the files under `folder`, at any depth."""
    if not folder.is_dir():
        raise UserError(f"select.exclude={folder}: no such folder; give the folder of labeled images, or leave it out")
    return {name for _, _, files in os.walk(folder) for name in files}


def folder_pool(folder: Path, exclude: Path | None, preprocess_cfg: DictConfig) -> Pool:
    """The image files at the top of `folder`, made inputs; those whose names are found under
    `exclude` are the labeled ones."""
    if not folder.is_dir():
        raise UserError(f"select.pool={folder}: no such folder; give a folder of unlabeled images")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise UserError(f"select.pool={folder}: the folder is empty; put the unlabeled images there")
    labeled_names = names_under(exclude) if exclude is not None else set()
    kept, inputs, labeled, skipped = [], [], [], []
    for path in files:
        if path.suffix.lower() not in SUFFIXES:
            skipped.append(f"{path}: not an image file ({path.suffix or 'no suffix'})")
            continue
        try:
            digit = preprocess(load_grayscale(path), preprocess_cfg)
        except UserError as e:
            skipped.append(f"{path}: {e}")
            continue
        (labeled if path.name in labeled_names else inputs).append(digit)
        if path.name not in labeled_names:
            kept.append({"file": str(path)})
    if not kept and not labeled:
        raise UserError(f"select.pool={folder}: none of its {len(files)} files is a readable image ({skipped[0]})")
    return Pool(stack(inputs), kept, stack(labeled), skipped, len(labeled))


def stack(digits: list[np.ndarray]) -> torch.Tensor:
    if not digits:
        return torch.zeros(0, 1, 28, 28, dtype=torch.uint8)
    return torch.from_numpy(np.stack(digits)).round().clamp(0, 255).to(torch.uint8).unsqueeze(1)


def labeled_indices(dataset: DictConfig, size: int, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the positions in the training file of the images whose labels a run on `dataset` trained
    on, those of its validation images): its split drawn again with the same seeds (data/split.py)
    on the positions themselves, or the positions its dataset.labeled lists."""
    train, val = file_positions(size, dataset.val_size, dataset.split_seed)
    if OmegaConf.select(dataset, "labeled") is not None:
        return train[torch.isin(train, read_positions(dataset.labeled))], val
    labeled, _ = split_labels(
        Split(train, labels[train]), dataset.labels_per_class, dataset.label_fraction, dataset.split_seed
    )
    return labeled.images, val


def training_split_pool(dataset: DictConfig, trained_on: DictConfig | None) -> Pool:
    """The training split of an IDX data set; less the images whose labels a checkpoint used
    (`trained_on`: its data set, when it is this one and its objective used labels), for training
    or validation."""
    if dataset.reader._target_ != IDX_READER:
        raise UserError(
            f"dataset={dataset.name} has no training file to index; give select.pool=<folder of unlabeled images>"
        )
    from mnist_cli.data.idx_files import read_split

    train = read_split(dataset, "train")
    taken = torch.zeros(len(train), dtype=torch.bool)
    taken[file_positions(len(train), dataset.val_size, dataset.split_seed)[1]] = True  # any run validates on them
    trained = torch.zeros(0, dtype=torch.long)
    if trained_on is not None:
        trained, val = labeled_indices(trained_on, len(train), train.labels)
        taken[trained] = True
        taken[val] = True
        if bool(taken.all()):
            raise UserError(
                f"the checkpoint used every label of {dataset.name}'s training split: nothing is left to select "
                "from; give select.pool=<folder of unlabeled images>"
            )
    left = (~taken).nonzero().flatten()
    rows = [{"split": "train", "index": i} for i in left.tolist()]
    return Pool(train.images[left], rows, train.images[trained], [], int(taken.sum()))
