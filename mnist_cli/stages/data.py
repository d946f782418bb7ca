"""`mnist data dataset=...`: a data set as the model will see it: images per class and split,
the sizes of the image files, and grids of samples after preprocessing (samples.png) and after the
training augmentation (augmented.png). Writes data.json with the counts."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from mnist_cli.data.batches import BatchPrep
from mnist_cli.data.datasets import load_dataset
from mnist_cli.report import plots
from mnist_cli.report.console import print_class_counts, print_key_values
from mnist_cli.run_dir import RunDir
from mnist_cli.stages.train_and_test import settle
from mnist_cli.training.runtime import setup


def run(cfg: DictConfig, run: RunDir, resume: dict[str, Any] | None) -> dict[str, Any]:
    setup(cfg)  # seeds the augmentation drawn for augmented.png
    found = load_dataset(cfg.dataset, cfg.preprocess)
    settle(cfg.dataset, found)  # the classes and normalization the files give
    run.write_config(cfg)
    run.write_skipped(found.skipped)
    classes = list(cfg.dataset.classes)
    splits = {"train": found.train, "val": found.val, "test": found.test}
    total = sum(len(s) for s in splits.values())
    counts = {name: torch.bincount(s.labels, minlength=len(classes)).tolist() for name, s in splits.items()}
    print_class_counts(f"{cfg.dataset.name}: images per class and split", classes, counts)

    sample = sample_per_class(found.train.labels, cfg.data.samples_per_class, cfg.data.max_classes)
    images = found.train.images[sample]
    titles = [classes[i] for i in found.train.labels[sample].tolist()]
    augmented = BatchPrep(cfg.dataset, channels_last=False).pixels(
        images, train=True, generator=torch.Generator().manual_seed(cfg.trainer.seed)
    )
    columns = cfg.data.samples_per_class
    plots.image_grid(list(images[:, 0].numpy()), titles, run.path / "samples.png", columns=columns)
    plots.image_grid(list((augmented[:, 0] * 255).numpy()), titles, run.path / "augmented.png", columns=columns)

    sizes = file_sizes(found.sizes)
    print_key_values(
        f"data: {cfg.dataset.name}" + (f" from {cfg.dataset.root}" if cfg.dataset.format != "idx" else ""),
        {
            "images": f"{total:,} ({', '.join(f'{n} {len(s):,}' for n, s in splits.items())})",
            "classes": len(classes),
            "image files": sizes,
            "skipped files": len(found.skipped),
            "normalization": f"mean {cfg.dataset.mean}, std {cfg.dataset.std}",
            "preprocess": cfg.preprocess.mode if cfg.dataset.format == "folder" else "none (stored as 28x28 inputs)",
            "written": f"samples.png, augmented.png, data.json in {run.path}",
        },
    )
    results = {
        "dataset": cfg.dataset.name,
        "images": total,
        "classes": classes,
        "counts": counts,
        "file_sizes": sizes,
        "skipped_files": len(found.skipped),
        "mean": cfg.dataset.mean,
        "std": cfg.dataset.std,
    }
    run.write_json("data.json", results)
    return {key: results[key] for key in ("dataset", "images", "skipped_files")}


def sample_per_class(labels: torch.Tensor, per_class: int, max_classes: int) -> torch.Tensor:
    """The indices of the first `per_class` images of each of the first `max_classes` classes, class by class."""
    return torch.cat(
        [(labels == c).nonzero().flatten()[:per_class] for c in range(min(max_classes, int(labels.max()) + 1))]
    )


def file_sizes(sizes: torch.Tensor | None) -> str:
    """A line on the image files' own sizes (height x width)."""
    if sizes is None or not len(sizes):
        return "28x28, IDX files"
    h, w = sizes[:, 0].float(), sizes[:, 1].float()
    distinct = len(torch.unique(sizes, dim=0))
    return (
        f"{distinct} size(s); height {int(h.min())}-{int(h.max())} (median {int(h.median())}), "
        f"width {int(w.min())}-{int(w.max())} (median {int(w.median())})"
    )
