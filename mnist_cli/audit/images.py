"""The labeled images an audit checks, each with what names it: for IDX files the split and the
position in its file, for a folder of images the file itself. `which`: the test split, the
training split (with the validation images: both are labeled by the same hand), or all of them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from mnist_cli.data.datasets import FOLDER_READER, IDX_READER
from mnist_cli.errors import UserError


@dataclass
class Labeled:
    images: torch.Tensor  # (N, 1, 28, 28) uint8
    labels: torch.Tensor  # (N,) the given labels
    rows: list[dict[str, Any]]  # per image: {"split": ..., "index": i} or {"file": path}
    classes: list[str]  # the data set's class names, which the labels number


def idx_images(dataset: DictConfig, which: str) -> Labeled:
    from mnist_cli.data.idx_files import read_split

    parts = {"test": ["test"], "train": ["train"], "all": ["train", "test"]}[which]
    splits = [(name, read_split(dataset, name)) for name in parts]
    return Labeled(
        torch.cat([s.images for _, s in splits]),
        torch.cat([s.labels for _, s in splits]),
        [{"split": name, "index": i} for name, s in splits for i in range(len(s))],
        list(dataset.classes),
    )


def folder_images(dataset: DictConfig, preprocess: DictConfig, which: str) -> Labeled:
    """The folder's images as datasets.assemble divides them (a carved test split included), each
    named by its file: the division is replayed on the images' positions."""
    from mnist_cli.data.datasets import assemble
    from mnist_cli.data.folder import read_folder, scan

    converted = read_folder(dataset, preprocess)
    bad = {line.split(": ")[0] for line in converted["skipped"]}
    files = [e.file for e in scan(Path(dataset.root).expanduser().resolve()) if e.file not in bad]
    positions = {**converted, "images": torch.arange(len(files))}  # Split.subset carries whatever `images` holds
    found = assemble(dataset, positions)
    chosen = {"test": [found.test], "train": [found.train, found.val], "all": [found.train, found.val, found.test]}
    picked = torch.cat([s.images.flatten() for s in chosen[which]])
    labels = torch.cat([s.labels for s in chosen[which]])
    rows = [{"file": files[i]} for i in picked.tolist()]
    return Labeled(converted["images"][picked].unsqueeze(1), labels, rows, found.classes)


def labeled_images(dataset: DictConfig, preprocess: DictConfig, which: str) -> Labeled:
    reader = dataset.reader._target_
    if reader == IDX_READER:
        return idx_images(dataset, which)
    if reader == FOLDER_READER:
        return folder_images(dataset, preprocess, which)
    raise UserError(
        f"dataset={dataset.name}: the audit reads IDX files or a folder of images, not this data set's files"
    )
