"""Your own data, measured on MNIST-family data written out as PNG files in class folders:

    python benchmarks/own_data.py convert  [--data ../shared/data/mnist]
    python benchmarks/own_data.py compare  [--data ../shared/data/mnist] [--seeds 0 1 2]
    python benchmarks/own_data.py finetune [--data ../shared/data/mnist] [--fashion DIR] [--seeds 0 1 2]

convert: the time to convert the PNG tree (first read, both cores) and to open it again from the
cache. compare: the default `mnist pretrain` on the IDX files and on the same images as PNG
folders (preprocess=mnist_like, the default, and preprocess=resize, which keeps a 28x28 image as
it is). finetune: Fashion-MNIST (--fashion: its four IDX files; Debian's dataset-fashion-mnist
puts them in /usr/share/datasets/fashion-mnist) as PNG folders named by garment: a model pretrained
on MNIST (the default recipe, seed 0), finetuned on them (its defaults, and as many epochs as a
fresh model gets), beside one trained from scratch on them.
The trees are written once under --work (default: a folder in the temporary directory).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from pretrain_cnn import DEFAULT_DATA  # noqa: E402
from recipes import cpu_name, run  # noqa: E402

from mnist_cli.config.compose import compose_config  # noqa: E402
from mnist_cli.data.datasets import load_dataset  # noqa: E402
from mnist_cli.data.idx_files import read_split  # noqa: E402

FASHION_AUGMENT = [  # conf/dataset/fashion_mnist.yaml's augmentation, for the same images in folders
    "dataset.augment.max_shift=0",
    "dataset.augment.max_rotate=0",
    "dataset.augment.max_scale=0",
    "dataset.augment.hflip=true",
]


def write_tree(data: str, dataset: str, out: Path) -> Path:
    """The IDX data set's train and test images as out/<split>/<class name>/<n>.png (once)."""
    done = out / ".complete"
    if done.exists():
        return out
    cfg = compose_config(f"dataset={dataset}", f"dataset.root={data}", "dataset.download=false").dataset
    for split in ("train", "test"):
        images = read_split(cfg, split)
        for i, (image, label) in enumerate(zip(images.images[:, 0].numpy(), images.labels.tolist())):
            folder = out / split / cfg.classes[label].replace("/", "-")  # T-shirt/top: a folder name
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i:05d}.png")
    done.touch()
    return out


def spread(accs: list[float]) -> list[str]:
    return [f"{min(accs):.2%}", f"{statistics.mean(accs):.2%}", " ".join(f"{a:.2%}" for a in accs)]


def convert(args: argparse.Namespace, console: Console) -> None:
    tree = write_tree(args.data, "mnist", args.work / "mnist-png")
    with tempfile.TemporaryDirectory() as cache:
        cfg = compose_config("dataset=folder", f"dataset.root={tree}", f"dataset.cache_dir={cache}")
        times = []
        for _ in range(2):
            tic = time.perf_counter()
            found = load_dataset(cfg.dataset, cfg.preprocess)
            times.append(time.perf_counter() - tic)
    table = Table(title=f"PNG folders of {args.data} read by dataset=folder; {cpu_name()}")
    for column in ("images", "converted (first read) s", "from the cache s"):
        table.add_column(column, justify="right")
    table.add_row(f"{len(found.train) + len(found.val) + len(found.test):,}", f"{times[0]:.1f}", f"{times[1]:.2f}")
    console.print(table)


def compare(args: argparse.Namespace, console: Console) -> None:
    tree = write_tree(args.data, "mnist", args.work / "mnist-png")
    sources = {
        "IDX files": [f"dataset.root={args.data}"],
        "PNG folders, preprocess=mnist_like": ["dataset=folder", f"dataset.root={tree}"],
        "PNG folders, preprocess=resize": ["dataset=folder", f"dataset.root={tree}", "preprocess=resize"],
    }
    table = Table(title=f"mnist pretrain (defaults) on {args.data}, seeds {args.seeds}; {cpu_name()}")
    for column in ("data", "test acc min", "mean", "per seed"):
        table.add_column(column)
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in sources.items():
            accs = [run(Path(tmp), [*overrides, f"trainer.seed={seed}"])["test_acc"] for seed in args.seeds]
            console.print(f"{name}: {' '.join(f'{a:.2%}' for a in accs)}")
            table.add_row(name, *spread(accs))
    console.print(table)


def finetune(args: argparse.Namespace, console: Console) -> None:
    tree = write_tree(args.fashion, "fashion_mnist", args.work / "fashion-png")
    folder = ["dataset=folder", f"dataset.root={tree}", "preprocess=resize", *FASHION_AUGMENT]
    table = Table(title=f"Fashion-MNIST as PNG folders ({tree}), seeds {args.seeds}; {cpu_name()}")
    for column in ("start", "test acc min", "mean", "per seed", "wall s"):
        table.add_column(column)
    with tempfile.TemporaryDirectory() as tmp:
        mnist_run = run(Path(tmp), [f"dataset.root={args.data}"])
        console.print(f"MNIST model: {mnist_run['test_acc']:.2%} on MNIST's test set")
        start = f"ckpt={mnist_run['run_dir']}"
        epochs = compose_config().trainer.epochs  # a fresh model's
        finetune_epochs = compose_config("stage=finetune").trainer.epochs
        for name, stage, extra in (
            (f"from scratch (mnist pretrain: {epochs} epochs)", "pretrain", []),
            (f"finetuned from MNIST (mnist finetune: {finetune_epochs} epochs)", "finetune", [start]),
            (f"finetuned from MNIST, trainer.epochs={epochs}", "finetune", [start, f"trainer.epochs={epochs}"]),
        ):
            runs = [run(Path(tmp), [*folder, *extra, f"trainer.seed={seed}"], stage) for seed in args.seeds]
            accs, walls = [r["test_acc"] for r in runs], [r["wall_s"] for r in runs]
            console.print(f"{name}: {' '.join(f'{a:.2%}' for a in accs)}")
            table.add_row(name, *spread(accs), f"{min(walls):.0f}-{max(walls):.0f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["convert", "compare", "finetune"])
    parser.add_argument("--data", default=DEFAULT_DATA, help="MNIST's IDX files")
    parser.add_argument("--fashion", default="/usr/share/datasets/fashion-mnist", help="Fashion-MNIST's IDX files")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "mnist-cli-own-data")
    args = parser.parse_args()
    {"convert": convert, "compare": compare, "finetune": finetune}[args.what](args, Console(width=200))


if __name__ == "__main__":
    main()
