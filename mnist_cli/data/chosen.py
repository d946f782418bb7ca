"""dataset.labeled: the training images of an IDX data set whose labels a run keeps, named by
their positions in the training file: a `select.csv` that `mnist select` wrote, or any CSV with an
`index` column. The other training images (less the validation split) are the unlabeled pool."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from mnist_cli.data.split import Split, train_val_split
from mnist_cli.errors import UserError


def read_positions(path: str) -> torch.Tensor:
    """The positions the CSV at `path` lists in its `index` column, each once."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"dataset.labeled={path}: no such file; give the select.csv `mnist select` wrote")
    with open(file, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "index" not in rows[0]:
        raise UserError(
            f"dataset.labeled={path}: no `index` column with rows under it; give the select.csv of an IDX pool"
        )
    try:
        positions = [int(row["index"]) for row in rows]
    except (TypeError, ValueError):
        raise UserError(f"dataset.labeled={path}: an `index` that is not a whole number; is it a select.csv?") from None
    return torch.tensor(sorted(set(positions)), dtype=torch.long)


def file_positions(size: int, val_size: float | int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(the training split's positions in the training file of `size` images, the validation
    split's), drawn again as data/split.py draws them."""
    train, val = train_val_split(Split(torch.arange(size), torch.zeros(size, dtype=torch.long)), val_size, seed)
    return train.images, val.images


def split_listed(train: Split, val: Split, path: str, val_size: float | int, seed: int) -> tuple[Split, Split]:
    """(the images of `train` whose positions the CSV at `path` lists, the rest): `train` and
    `val` are the training file's two splits."""
    listed = read_positions(path)
    size = len(train) + len(val)
    if len(listed) and (int(listed[0]) < 0 or int(listed[-1]) >= size):
        raise UserError(
            f"dataset.labeled={path}: index {int(listed[-1]) if listed[-1] >= size else int(listed[0])} is outside "
            f"the training file's {size} images; was it picked from another data set?"
        )
    positions, val_positions = file_positions(size, val_size, seed)
    if in_val := int(torch.isin(listed, val_positions).sum()):
        raise UserError(
            f"dataset.labeled={path}: {in_val} of its images are validation images of this split (dataset.val_size, "
            "dataset.split_seed); pick them with `mnist select` and the same dataset.split_seed"
        )
    kept = torch.isin(positions, listed)
    return train.subset(kept.nonzero().flatten()), train.subset((~kept).nonzero().flatten())
