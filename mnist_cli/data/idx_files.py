"""The MNIST family's files (MNIST, Fashion-MNIST, KMNIST, QMNIST, EMNIST): finding a split's IDX
files (flat, or in torchvision's <root>/<Name>/raw/), fetching them with torchvision's own
downloader when missing, and reading them as the data set's config describes them. A pair of
files is decoded once (gunzip, header checks) and kept in dataset.cache_dir (data/cache.py): later
runs read the decoded tensors, until a file changes."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from mnist_cli.data.cache import cached
from mnist_cli.data.datasets import Dataset
from mnist_cli.data.idx import read_idx
from mnist_cli.data.split import Split, empty_like, train_val_split
from mnist_cli.errors import UserError


def read(cfg: DictConfig, preprocess: DictConfig | None = None, train: bool = True) -> Dataset:
    """The data set's test split and (with `train`) its training split, divided into train and
    validation (dataset.val_size, dataset.split_seed); `preprocess` does not apply (IDX files hold
    28x28 inputs already)."""
    test = read_split(cfg, "test")
    if not train:
        return Dataset(empty_like(test), empty_like(test), test, list(cfg.classes))
    train_split, val = train_val_split(read_split(cfg, "train"), cfg.val_size, cfg.split_seed)
    return Dataset(train_split, val, test, list(cfg.classes))


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
    """Fetch the files with torchvision's downloader, which verifies their checksums."""
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, cfg.torchvision_name)
    root = Path(cfg.root).expanduser()
    try:
        for train in (True, False):
            dataset_class(
                str(root), train=train, download=True, **OmegaConf.to_container(cfg.download_args, resolve=True)
            )
    except Exception as e:  # torchvision raises RuntimeError or URLError variants when offline
        # torchvision's message is a header and, per mirror, "Tried <url>, got:" and the error
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        reason = lines[-1] if lines else type(e).__name__
        raise UserError(
            f"dataset={cfg.name}: the IDX files are not in {root} and downloading them failed ({reason}); "
            f"copy the files there or set dataset.root=<folder with them>"
        ) from None


def split_files(cfg: DictConfig, split: str) -> tuple[Path, Path]:
    dirs = search_dirs(cfg)
    stems = list(cfg.files[split])
    found = [find_file(dirs, stem) for stem in stems]
    if None in found and cfg.download:
        download(cfg)
        found = [find_file(dirs, stem) for stem in stems]
    if None in found:
        missing = [stem for stem, path in zip(stems, found) if path is None]
        raise UserError(
            f"{cfg.name}: {', '.join(missing)}(.gz) not found in {' or '.join(map(str, dirs))}; "
            "set dataset.root=<folder with the IDX files>, or dataset.download=true when online"
        )
    return found[0], found[1]


def read_split(cfg: DictConfig, split: str) -> Split:
    """Read the train or test split, checked against the config's class count. Images stored
    column by column (cfg.transposed: EMNIST's) are turned upright; labels start at
    cfg.first_label in the files (EMNIST's letters: 1) and at 0 here; a label file with several
    columns (QMNIST's) has the class in the first."""
    image_path, label_path = split_files(cfg, split)
    images, labels = decoded(OmegaConf.select(cfg, "cache_dir"), image_path, label_path)
    if labels.dim() == 2:
        labels = labels[:, 0]
    if images.dim() != 3 or labels.dim() != 1:
        raise UserError(
            f"{image_path} / {label_path}: expected images (N, H, W) and labels (N,); are the files swapped?"
        )
    if len(images) != len(labels):
        raise UserError(
            f"{image_path}: {len(images)} images but {label_path} has {len(labels)} labels; use a matching pair of files"
        )
    labels = labels.long() - cfg.first_label
    num_classes = len(cfg.classes)
    if len(labels) and (int(labels.max()) >= num_classes or int(labels.min()) < 0):
        bad = int(labels.max()) if int(labels.max()) >= num_classes else int(labels.min())
        raise UserError(
            f"{label_path}: label {bad + cfg.first_label} is out of range for {num_classes} classes "
            f"(from {cfg.first_label}); is it the right data set?"
        )
    if cfg.transposed:
        images = images.transpose(1, 2).contiguous()
    return Split(images.unsqueeze(1), labels)


def decoded(cache_dir: str | None, image_path: Path, label_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The two files' tensors, from `cache_dir` when neither file changed since it was decoded there."""
    files = [image_path.resolve(), label_path.resolve()]
    key = {"files": [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files]}
    found = cached(
        cache_dir, f"idx-{image_path.name}", key, lambda: {"images": read_idx(files[0]), "labels": read_idx(files[1])}
    )
    return found["images"], found["labels"]
