"""A split of a data set in memory, and the seeded ways of dividing one: the validation split, a
class-balanced share (a test or validation split carved from one tree of images), a few labels per
class. Every division is drawn from its own seed, so the same seed always gives the same split."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mnist_cli.errors import UserError

# Which split an image read from files belongs to (data/folder.py, data/csv_table.py), before
# datasets.assemble divides them: the files' own train, val or test, or not yet (one tree or
# table, whose test and validation splits are carved from it).
TRAIN, VAL, TEST, UNDIVIDED = 0, 1, 2, -1


@dataclass
class Split:
    images: torch.Tensor  # (N, 1, H, W) uint8
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device) -> Split:
        return Split(self.images.to(device, non_blocking=True), self.labels.to(device, non_blocking=True))

    def subset(self, idx: torch.Tensor) -> Split:
        return Split(self.images[idx], self.labels[idx])


def empty_like(split: Split) -> Split:
    return split.subset(torch.zeros(0, dtype=torch.long))


def split_labels(train: Split, per_class: int | None, fraction: float | None, seed: int) -> tuple[Split, Split]:
    """(the labeled part, the rest): a class-balanced subset of `per_class` images of each class,
    or `fraction` of each class's images, drawn with `seed` (the same seed, the same subset); the
    rest is what semi-supervised training may use without its labels. No limit: (train, empty)."""
    if per_class is None and fraction is None:
        return train, empty_like(train)
    g = torch.Generator().manual_seed(seed)
    keep = []
    for label in range(int(train.labels.max()) + 1):
        members = (train.labels == label).nonzero().flatten()
        count = per_class if per_class is not None else max(1, round(fraction * len(members)))
        if count > len(members):
            raise UserError(
                f"dataset.labels_per_class={per_class}: class {label} has only {len(members)} training images"
            )
        keep.append(members[torch.randperm(len(members), generator=g)[:count]])
    labeled = torch.zeros(len(train), dtype=torch.bool)
    labeled[torch.cat(keep)] = True
    return train.subset(labeled.nonzero().flatten()), train.subset((~labeled).nonzero().flatten())


def class_balanced_split(split: Split, share: float, seed: int) -> tuple[Split, Split]:
    """(the rest, `share` of each class's images drawn with `seed`); a class of two or more images
    gives at least one and keeps at least one."""
    g = torch.Generator().manual_seed(seed)
    taken = torch.zeros(len(split), dtype=torch.bool)
    order = split.labels.argsort(stable=True)
    counts = torch.bincount(split.labels).tolist()
    for members in order.split(counts):
        if not len(members):
            continue
        count = min(max(1, round(share * len(members))), len(members) - 1)
        taken[members[torch.randperm(len(members), generator=g)[:count]]] = True
    return split.subset((~taken).nonzero().flatten()), split.subset(taken.nonzero().flatten())


def repeat(split: Split, n: int) -> Split:
    """`split` repeated whole as often as it takes to hold at least `n` images."""
    copies = -(-n // len(split))
    return split.subset(torch.arange(len(split)).repeat(max(1, copies)))


def val_count(val_size: float | int, n: int) -> int:
    count = round(val_size * n) if isinstance(val_size, float) else int(val_size)
    if not 1 <= count < n:
        raise UserError(f"dataset.val_size={val_size} leaves no training images out of {n}; use a smaller value")
    return count


def train_val_split(train: Split, val_size: float | int, seed: int) -> tuple[Split, Split]:
    """Hold out a seeded random validation subset; the same seed always gives the same split."""
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    n_val = val_count(val_size, len(train))
    val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
    return train.subset(train_idx), train.subset(val_idx)
