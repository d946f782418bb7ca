"""A data set as the stages use it: its train, validation and test splits and its class names, read
by the reader conf/dataset/<name>.yaml names with `reader._target_`:
- idx_files.read: the MNIST family's files (data/idx_files.py);
- folder.read: folders of image files (data/folder.py);
- csv_table.read: Kaggle's CSV layout (data/csv_table.py).
Each reader is called as read(dataset config, preprocess config, train); folder and CSV readers
give converted files, which assemble() divides into splits here.

The images stay uint8 tensors (N, 1, 28, 28) from disk to the training device; turning them into
normalized, augmented floats happens per batch on the device (see batches.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig

from mnist_cli.data.split import TEST, TRAIN, UNDIVIDED, VAL, Split, class_balanced_split, val_count
from mnist_cli.errors import UserError
from mnist_cli.targets import build

# The readers of conf/dataset/*.yaml's reader._target_, for what needs to know which kind of files
# a data set is (an IDX file's images have positions; a folder's have file names).
IDX_READER = "mnist_cli.data.idx_files.read"
FOLDER_READER = "mnist_cli.data.folder.read"


@dataclass
class Dataset:
    train: Split
    val: Split
    test: Split
    classes: list[str]
    skipped: list[str] = field(default_factory=list)  # "<file>: <why>" of each file passed over
    sizes: torch.Tensor | None = None  # each image file's own (height, width); None: IDX files (all 28x28)
    preprocessed: str | None = None  # preprocess.mode, for images made inputs from files of any size; None: none


def load_dataset(cfg: DictConfig, preprocess: DictConfig | None = None, train: bool = True) -> Dataset:
    """The data set of `cfg` (the dataset block); `preprocess`: how image files become inputs
    (dataset=folder); `train`: also read the training images (IDX files: eval needs the test split alone)."""
    return build(cfg.reader, cfg, preprocess, train)


def load_split(cfg: DictConfig, split: str, preprocess: DictConfig | None = None) -> Split:
    """One split ("train", "val" or "test") of the data set."""
    return getattr(load_dataset(cfg, preprocess, train=split != "test"), split)


def assemble(cfg: DictConfig, converted: dict) -> Dataset:
    """The splits of converted files (a folder's or a CSV file's): the images of each class name, numbered as cfg.classes
    lists them (null: the names that have training images, in the source's order); a test or
    validation split the files do not give is carved from the training images, class-balanced.

    `converted` (what folder.py and csv_table.py give, and cache.py keeps): images (N, 28, 28)
    uint8, labels (N,) indices into names (the class names the files give), parts (N,): TRAIN,
    VAL, TEST or UNDIVIDED (split.py), sizes (N, 2): each file's own height and width, and
    skipped: "<file>: <why>" of each file passed over (refused with dataset.on_bad_file=fail)."""
    if converted["skipped"] and cfg.on_bad_file == "fail":
        raise UserError(
            f"{converted['skipped'][0]} ({len(converted['skipped'])} such files); "
            "remove them, or set dataset.on_bad_file=skip to train without them"
        )
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
