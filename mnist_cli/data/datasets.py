"""A data set as the stages use it: its train, validation and test splits and its class names,
from any of its sources (dataset.format):
- idx: the MNIST family's files (data/idx_files.py);
- folder: folders of image files (data/folder.py);
- csv: Kaggle's CSV layout (data/csv_table.py).

The images stay uint8 tensors (N, 1, 28, 28) from disk to the training device; turning them into
normalized, augmented floats happens per batch on the device (see batches.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig

from mnist_cli.data import idx_files
from mnist_cli.data.split import (
    TEST,
    TRAIN,
    UNDIVIDED,
    VAL,
    Split,
    class_balanced_split,
    empty_like,
    train_val_split,
    val_count,
)
from mnist_cli.errors import UserError


@dataclass
class Dataset:
    train: Split
    val: Split
    test: Split
    classes: list[str]
    skipped: list[str] = field(default_factory=list)  # "<file>: <why>" of each file passed over
    sizes: torch.Tensor | None = None  # each image file's own (height, width); None: IDX files (all 28x28)


def load_dataset(cfg: DictConfig, preprocess: DictConfig | None = None, train: bool = True) -> Dataset:
    """The data set of `cfg` (the dataset block); `preprocess`: how image files become inputs
    (dataset=folder); `train`: also read the training images (IDX files: eval needs the test split alone)."""
    if cfg.format == "idx":
        test = idx_files.load_split(cfg, "test")
        if not train:
            return Dataset(empty_like(test), empty_like(test), test, list(cfg.classes))
        train_split, val = train_val_split(idx_files.load_split(cfg, "train"), cfg.val_size, cfg.split_seed)
        return Dataset(train_split, val, test, list(cfg.classes))
    if cfg.format == "folder":
        from mnist_cli.data.folder import read_folder

        converted = read_folder(cfg, preprocess)
    else:
        from mnist_cli.data.csv_table import read_table

        converted = read_table(cfg)
    if converted["skipped"] and cfg.on_bad_file == "fail":
        raise UserError(
            f"{converted['skipped'][0]} ({len(converted['skipped'])} such files); "
            "remove them, or set dataset.on_bad_file=skip to train without them"
        )
    return assemble(cfg, converted)


def load_split(cfg: DictConfig, split: str, preprocess: DictConfig | None = None) -> Split:
    """One split ("train", "val" or "test") of the data set."""
    return getattr(load_dataset(cfg, preprocess, train=split != "test"), split)


def assemble(cfg: DictConfig, converted: dict) -> Dataset:
    """The splits of converted files: the images of each class name, numbered as cfg.classes
    lists them (null: the names that have training images, in the source's order); a test or
    validation split the files do not give is carved from the training images, class-balanced.

    `converted` (what folder.py and csv_table.py give, and cache.py keeps): images (N, 28, 28)
    uint8, labels (N,) indices into names (the class names the files give), parts (N,): TRAIN,
    VAL, TEST or UNDIVIDED (split.py), sizes (N, 2): each file's own height and width, and
    skipped: "<file>: <why>" of each file passed over."""
    names, labels, parts = converted["names"], converted["labels"], converted["parts"]
    trained = {names[i] for i in set(labels[(parts == TRAIN) | (parts == UNDIVIDED)].tolist())}
    classes = list(cfg.classes) if cfg.classes is not None else [name for name in names if name in trained]
    number = {name: i for i, name in enumerate(classes)}
    for name in names:
        if name in number:
            continue
        if cfg.classes is None:
            raise UserError(
                f"class '{name}' has test or validation images but no training images; add some or remove its folder"
            )
        raise UserError(
            f"class '{name}' is not one of the classes the model knows ({', '.join(classes)}: dataset.classes); "
            "remove its images, or train a model on these classes"
        )
    images = converted["images"].unsqueeze(1)
    all_images = Split(images, torch.tensor([number[n] for n in names], dtype=torch.long)[labels])
    train, val, test, undivided = (
        all_images.subset((parts == p).nonzero().flatten()) for p in (TRAIN, VAL, TEST, UNDIVIDED)
    )
    if len(undivided):  # one tree: test and validation carved from it
        train, test = class_balanced_split(undivided, cfg.test_size, cfg.split_seed)
    if not len(val) and len(train):
        share = cfg.val_size if isinstance(cfg.val_size, float) else val_count(cfg.val_size, len(train)) / len(train)
        train, val = class_balanced_split(train, share, cfg.split_seed + 1)
    if not len(test) and len(train):
        train, test = class_balanced_split(train, cfg.test_size, cfg.split_seed)
    return Dataset(train, val, test, classes, list(converted["skipped"]), converted["sizes"])
