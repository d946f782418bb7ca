"""The label audit on your own data, measured: plant label errors in a folder of images and see how
many of them `mnist audit` puts on top.

    python benchmarks/audit.py [--data ../shared/data/mnist] [--images 3000] [--flip 0.02]
        [--seeds 0 1 2] [--folds 5]

Each seed writes the first --images images of MNIST's training split as PNG files in the <class>/
folder layout, files --flip of them (drawn with the seed) under a wrong class (drawn uniformly from
the other nine), and runs `mnist audit dataset=folder dataset.root=<folder> audit.split=all` with
its defaults otherwise (5-fold cross-validation of the default CNN, confident learning). Printed
per seed: the images, the planted errors, what confident learning flags, and the precision and
recall of the top k suspects for k = the planted count and twice it, and of the flagged set. MNIST's
own few label errors among the images count against precision. CPU minutes: the command's user +
system time.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from pretrain_cnn import DEFAULT_DATA  # noqa: E402
from recipes import cpu_name  # noqa: E402


def plant(folder: Path, data: str, count: int, share: float, seed: int) -> set[str]:
    """The folder of images with `share` of them filed under a wrong class; the planted files' names."""
    from mnist_cli.config.compose import compose_config
    from mnist_cli.data.idx_files import read_split

    train = read_split(compose_config(f"dataset.root={data}", "dataset.download=false").dataset, "train")
    g = torch.Generator().manual_seed(seed)
    flipped = set(torch.randperm(count, generator=g)[: round(share * count)].tolist())
    planted = set()
    for i in range(count):
        label = int(train.labels[i])
        if i in flipped:
            label = (label + int(torch.randint(1, 10, (1,), generator=g))) % 10
            planted.add(f"{i:05d}.png")
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(train.images[i, 0].numpy()).save(folder / str(label) / f"{i:05d}.png")
    return planted


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--flip", type=float, default=0.02)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    table = Table(
        title=f"mnist audit on {args.images} MNIST images with {args.flip:.0%} planted label errors; {cpu_name()}"
    )
    for column in (
        "seed",
        "planted",
        "flagged",
        "P@planted",
        "R@planted",
        "P@2x",
        "R@2x",
        "P flagged",
        "R flagged",
        "CPU min",
    ):
        table.add_column(column, justify="right")
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "images"
            planted = plant(folder, args.data, args.images, args.flip, seed)
            before = cpu_seconds()
            done = subprocess.run(
                [sys.executable, "-m", "mnist_cli", "audit", "dataset=folder", f"dataset.root={folder}",
                 "audit.split=all", f"audit.folds={args.folds}", f"audit.top={args.images}"],
                cwd=tmp, capture_output=True, text=True,
            )  # fmt: skip
            if done.returncode:
                sys.exit(done.stderr)
            cpu = cpu_seconds() - before
            [run] = (Path(tmp) / "outputs" / "audit").iterdir()
            rows = list(csv.DictReader(open(run / "suspects.csv")))
            flagged = json.loads((run / "audit.json").read_text())["flagged"]
        names = [Path(r["file"]).name for r in rows]
        k = len(planted)

        hits = lambda top, planted=planted: len(set(top) & planted)
        flagged_names = [n for n, r in zip(names, rows) if r["flagged"] == "True"]
        flagged_hits = hits(flagged_names)
        table.add_row(
            str(seed), str(k), str(flagged),
            f"{hits(names[:k]) / k:.2f}", f"{hits(names[:k]) / k:.2f}",
            f"{hits(names[: 2 * k]) / (2 * k):.2f}", f"{hits(names[: 2 * k]) / k:.2f}",
            f"{flagged_hits / max(1, len(flagged_names)):.2f}", f"{flagged_hits / k:.2f}",
            f"{cpu / 60:.1f}",
        )  # fmt: skip
    Console(width=160).print(table)
    print(
        "P@k, R@k: precision and recall of the k most suspect (k: the planted count, or twice it); flagged: of the images confident learning flags"
    )


if __name__ == "__main__":
    main()
