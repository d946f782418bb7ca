"""`mnist data dataset=...`: a data set as the model will see it: images per class and split,
the sizes of the image files, and grids of samples after preprocessing (samples.png) and after the
training augmentation (augmented.png). Writes data.json with the counts."""

from __future__ import annotations

from typing import Any

import torch

from mnist_cli.data.batches import BatchPrep
from mnist_cli.data.datasets import load_dataset
from mnist_cli.report import plots
from mnist_cli.report.console import print_class_counts, print_key_values
from mnist_cli.stages.context import StageContext
from mnist_cli.stages.training import settled_dataset
from mnist_cli.training.runtime import setup


def run(ctx: StageContext) -> dict[str, Any]:
    setup(ctx.cfg)  # seeds the augmentation drawn for augmented.png
    found = load_dataset(ctx.cfg.dataset, ctx.cfg.preprocess)
    cfg, run = (
        ctx.settle(dataset=settled_dataset(ctx.cfg.dataset, found)),
        ctx.run,
    )  # the classes and normalization the files give
    run.write_skipped(found.skipped)
    classes = list(cfg.dataset.classes)
    splits = {"train": found.train, "val": found.val, "test": found.test}
    total = sum(len(s) for s in splits.values())
    counts = {name: torch.bincount(s.labels, minlength=len(classes)).tolist() for name, s in splits.items()}
    print_class_counts(f"{cfg.dataset.name}: images per class and split", classes, counts)

    sample = sample_per_class(found.train.labels, cfg.samples.per_class, cfg.samples.max_classes)
    images = found.train.images[sample]
    titles = [classes[i] for i in found.train.labels[sample].tolist()]
    augmented = BatchPrep(cfg.dataset, channels_last=False).pixels(
        images, train=True, generator=torch.Generator().manual_seed(cfg.trainer.seed)
    )
    columns = cfg.samples.per_class
    plots.image_grid(list(images[:, 0].numpy()), titles, run.path / "samples.png", columns=columns)
    plots.image_grid(list((augmented[:, 0] * 255).numpy()), titles, run.path / "augmented.png", columns=columns)

    sizes = file_sizes(found.sizes)
    print_key_values(
        f"data: {cfg.dataset.name} from {cfg.dataset.root}",
        {
            "images": f"{total:,} ({', '.join(f'{n} {len(s):,}' for n, s in splits.items())})",
            "classes": len(classes),
            "image files": sizes,
            "skipped files": len(found.skipped),
            "normalization": f"mean {cfg.dataset.mean}, std {cfg.dataset.std}",
            "preprocess": found.preprocessed or "none (stored as 28x28 inputs)",
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
