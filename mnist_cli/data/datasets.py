"""Finding, downloading and reading a data set, and carving the validation split.

The images stay uint8 tensors (N, 1, 28, 28) from disk to the training device; turning them into
normalized, augmented floats happens per batch on the device (see batches.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from mnist_cli.data.idx import read_idx
from mnist_cli.errors import UserError

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


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


def search_dirs(cfg: DictConfig) -> list[Path]:
    """A flat folder of the IDX files, or torchvision's <root>/<Name>/raw/ layout."""
    root = Path(cfg.root).expanduser()
    return [root, root / cfg.torchvision_name / "raw"]


def find_file(dirs: list[Path], stem: str) -> Path | None:
    for d in dirs:
        for name in (stem, stem + ".gz"):
            if (d / name).is_file():
                return d / name
    return None


def download(cfg: DictConfig) -> None:
    """Fetch the four files with torchvision's downloader, which verifies their checksums."""
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, cfg.torchvision_name)
    root = Path(cfg.root).expanduser()
    try:
        for train in (True, False):
            dataset_class(str(root), train=train, download=True)
    except Exception as e:  # torchvision raises RuntimeError or URLError variants when offline
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"{cfg.name}: files not found in {root} and the download failed ({reason}); "
            f"copy the four IDX files there or set dataset.root=<folder with them>"
        ) from None


def split_files(cfg: DictConfig, split: str) -> tuple[Path, Path]:
    dirs = search_dirs(cfg)
    found = [find_file(dirs, stem) for stem in FILES[split]]
    if None in found and cfg.download:
        download(cfg)
        found = [find_file(dirs, stem) for stem in FILES[split]]
    if None in found:
        missing = [stem for stem, path in zip(FILES[split], found) if path is None]
        raise UserError(
            f"{cfg.name}: {', '.join(missing)}(.gz) not found in {' or '.join(map(str, dirs))}; "
            "set dataset.root=<folder with the IDX files>, or dataset.download=true when online"
        )
    return found[0], found[1]


def load_split(cfg: DictConfig, split: str) -> Split:
    """Read the train or test split, checked against the config's class count."""
    image_path, label_path = split_files(cfg, split)
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.dim() != 3 or labels.dim() != 1:
        raise UserError(
            f"{image_path} / {label_path}: expected images (N, H, W) and labels (N,); are the files swapped?"
        )
    if len(images) != len(labels):
        raise UserError(
            f"{image_path}: {len(images)} images but {label_path} has {len(labels)} labels; use a matching pair of files"
        )
    num_classes = len(cfg.classes)
    if len(labels) and int(labels.max()) >= num_classes:
        raise UserError(
            f"{label_path}: label {int(labels.max())} is out of range for {num_classes} classes; is it the right data set?"
        )
    return Split(images.unsqueeze(1), labels.long())


def split_labels(train: Split, per_class: int | None, fraction: float | None, seed: int) -> tuple[Split, Split]:
    """(the labeled part, the rest): a class-balanced subset of `per_class` images of each class,
    or `fraction` of each class's images, drawn with `seed` (the same seed, the same subset); the
    rest is what semi-supervised training may use without its labels. No limit: (train, empty)."""
    if per_class is None and fraction is None:
        return train, train.subset(torch.zeros(0, dtype=torch.long))
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
