"""Replay against forgetting (finetune.replay): a model finetuned on new images alone forgets what
it knew; mixed with images of what it learned before, it keeps it.

The images replayed are the checkpoint's memory (what a finetune with replay keeps in its
checkpoints: a class-balanced sample of everything it and its ancestors trained on), or, for a
checkpoint without one, a class-balanced sample of its own training split, read again from its
data set. The new run's memory is a class-balanced sample of the replayed and the new images."""

from __future__ import annotations

import logging
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from mnist_cli.data.datasets import load_dataset
from mnist_cli.data.split import Split, repeat, split_labels
from mnist_cli.errors import UserError

log = logging.getLogger(__name__)


def class_balanced_sample(split: Split, size: int, seed: int) -> Split:
    """Up to `size` images of `split`, as evenly over its classes as they allow, drawn with `seed`."""
    if len(split) <= size:
        return split
    g = torch.Generator().manual_seed(seed)
    members = [
        (split.labels == c).nonzero().flatten()[torch.randperm(int((split.labels == c).sum()), generator=g)]
        for c in split.labels.unique().tolist()
    ]
    taken, left = [], size
    for i, m in enumerate(sorted(members, key=len)):  # the smallest classes first: what they lack goes to the rest
        share = min(len(m), left // (len(members) - i))
        taken.append(m[:share])
        left -= share
    return split.subset(torch.cat(taken).sort().values)


def replayed(checkpoint: dict[str, Any], size: int, seed: int) -> Split:
    """`size` images of what the checkpoint learned from: its memory, or a sample of its training split."""
    if "memory" in checkpoint:
        memory = checkpoint["memory"]
        return class_balanced_sample(Split(memory["images"], memory["labels"]), size, seed)
    saved = checkpoint["config"]
    dataset = OmegaConf.create(saved["dataset"])
    try:
        found = load_dataset(dataset, OmegaConf.create(saved.get("preprocess")) if saved.get("preprocess") else None)
    except UserError as e:
        raise UserError(
            f"finetune.replay mixes in the checkpoint's training images, and they cannot be read ({e}); "
            f"make them readable again, or set finetune.replay.size=0 to finetune without them (it forgets)"
        ) from None
    train, _ = split_labels(found.train, dataset.labels_per_class, dataset.label_fraction, dataset.split_seed)
    return class_balanced_sample(train, size, seed)


def mixed(new: Split, old: Split, share: float) -> Split:
    """The new images and the replayed ones, the smaller side repeated whole until the replayed
    images are about `share` of the whole."""
    if not len(old):
        return new
    if len(old) < share / (1 - share) * len(new):
        old = repeat(old, round(share / (1 - share) * len(new)))
    elif len(new) < (1 - share) / share * len(old):
        new = repeat(new, round((1 - share) / share * len(old)))
    return Split(torch.cat([new.images, old.images]), torch.cat([new.labels, old.labels]))


def continues(cfg: DictConfig, saved_dataset: dict[str, Any], classes: str) -> bool:
    """The run learns another data set than the checkpoint's and keeps (or grows) its classes: it
    goes on with what the checkpoint learned, which replay and the gate (evaluation/gate.py) guard."""
    other = (cfg.dataset.name, str(cfg.dataset.root)) != (saved_dataset["name"], str(saved_dataset["root"]))
    return other and classes in ("keep", "grow")


def applies(cfg: DictConfig, saved_dataset: dict[str, Any], classes: str) -> bool:
    """Replay runs when it is asked for, on a run that continues the checkpoint's learning, not semi-supervised."""
    return (
        cfg.finetune.replay.size > 0 and continues(cfg, saved_dataset, classes) and cfg.semi_supervised.name == "none"
    )
