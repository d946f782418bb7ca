"""Images as rows of a CSV file, Kaggle's "Digit Recognizer" layout: a header, then per image an
optional label column and 784 pixel values (0-255, the 28x28 image row by row), used as they are.

`dataset=csv dataset.root=DIR` trains on DIR/train.csv (labelled) and tests on DIR/test.csv when
that file has labels (the competition's has none: then a test split is carved from train.csv);
`mnist predict input=DIR/test.csv` labels its rows and writes the competition's submission.csv."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from mnist_cli.data.cache import cached
from mnist_cli.data.datasets import Dataset, assemble
from mnist_cli.data.images import SIZE
from mnist_cli.data.split import TEST, TRAIN, UNDIVIDED
from mnist_cli.errors import UserError

PIXELS = SIZE * SIZE


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(images (N, 28, 28) uint8, labels (N,) int64 or None when there is no label column)."""
    try:
        with path.open() as f:
            header = [name.strip().lower() for name in f.readline().split(",")]
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read it as CSV text ({e}); give a CSV file with a header row") from None
    labelled = header[0] == "label"
    if len(header) - labelled != PIXELS:
        raise UserError(
            f"{path}: the header has {len(header)} columns; expected an optional `label` column and "
            f"{PIXELS} pixel columns (pixel0..pixel{PIXELS - 1}, a 28x28 image row by row)"
        )
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    except ValueError as e:  # numpy counts the rows after the header
        ragged = re.search(r"changed from \d+ to (\d+) at row (\d+)", str(e))
        reason = f"line {int(ragged[2]) + 1} has {ragged[1]} values" if ragged else str(e).split(";")[0].strip()
        raise UserError(
            f"{path}: {reason}; every row needs {len(header)} comma-separated whole numbers, like the header"
        ) from None
    if table.shape[1] != len(header):
        raise UserError(f"{path}: rows have {table.shape[1]} values but the header names {len(header)} columns")
    pixels = table[:, labelled:]
    if len(pixels) and (pixels.min() < 0 or pixels.max() > 255):
        row = int(np.nonzero((pixels < 0).any(1) | (pixels > 255).any(1))[0][0]) + 2
        raise UserError(f"{path}: line {row} has a pixel value outside 0-255; pixels are whole numbers 0-255")
    labels = table[:, 0] if labelled else None
    if labels is not None and len(labels) and labels.min() < 0:
        raise UserError(f"{path}: line {int(np.argmin(labels)) + 2} has a negative label; labels are 0, 1, 2, ...")
    return pixels.astype(np.uint8).reshape(-1, SIZE, SIZE), labels


def read(cfg: DictConfig, preprocess: DictConfig | None = None, train: bool = True) -> Dataset:
    """The data set of dataset.root's train.csv (and a labelled test.csv); the rows are inputs already."""
    return assemble(cfg, read_table(cfg))


def read_table(cfg: DictConfig) -> dict[str, Any]:
    """DIR/train.csv (and a labelled DIR/test.csv) as a converted data set (see datasets.assemble):
    class names are the labels, "0", "1", ... in order."""
    root = Path(cfg.root).expanduser().resolve()
    train_file, test_file = root / "train.csv", root / "test.csv"
    if not train_file.is_file():
        raise UserError(
            f"dataset.root={root}: no train.csv there; give the folder of the competition's train.csv "
            f"(a header, then label,pixel0..pixel{PIXELS - 1} per image)"
        )
    files = [f for f in (train_file, test_file) if f.is_file()]
    key = {"files": [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files]}

    def build() -> dict[str, Any]:
        images, labels = read_csv(train_file)
        if labels is None:
            raise UserError(f"{train_file}: no `label` column first; training needs a label per row")
        parts = np.full(len(labels), UNDIVIDED)  # one table: test and validation splits are carved from it
        test_images, test_labels = read_csv(test_file) if test_file.is_file() else (None, None)
        if test_labels is not None:  # a labelled test set (the competition's test.csv has none: it is for predict)
            images, labels = np.concatenate([images, test_images]), np.concatenate([labels, test_labels])
            parts = np.concatenate([np.full(len(parts), TRAIN), np.full(len(test_labels), TEST)])
        values = np.unique(labels)
        return {
            "images": torch.from_numpy(images),
            "labels": torch.from_numpy(np.searchsorted(values, labels)),
            "parts": torch.from_numpy(parts),
            "sizes": torch.full((len(labels), 2), SIZE),
            "names": [str(v) for v in values],
            "skipped": [],
        }

    return cached(cfg.cache_dir, f"csv-{root.name}", key, build)
