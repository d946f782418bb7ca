"""Training speed against the conventional PyTorch loop, side by side in one process.

    python benchmarks/speed.py [--data ../shared/data/mnist] [--epochs 6] [--target 0.98]
    python benchmarks/speed.py --whole [--data ...] [--target 0.98] [--seeds 0 1 2]
        [--recipe NAME="override override ..."]...

--whole compares whole processes instead: the peer script (benchmarks/peer_mnist_main.py, PyTorch's
example MNIST script) from its launch until its first epoch at --target test accuracy, against the
whole `mnist pretrain` command for each seed, with the default recipe and each --recipe (a name and
the overrides it adds, e.g. --recipe cnn_fast="experiment=cnn_fast"). Each run's seconds are split
into start-up (launch to the first optimizer step: imports, composing the config, reading the data,
building the model and optimizer), training (with its validation), the final test (with the
temperature's fit) and exit (the summary, then the interpreter's exit), from the moments the run
records in summary.json's `timeline` and its launch and exit seen from outside. Then `mnist eval`
of the last run's checkpoint (the whole command: 10,000 test images, the tables and figures) and
`mnist --help` are timed.

Three ways to train on the same real MNIST files (by default the full 60,000 training images):
  1. conventional: torchvision datasets.MNIST, per-sample ToTensor + Normalize, a DataLoader with
     batch 64, the classic two-conv CNN, Adadelta lr 1.0 with StepLR gamma 0.7 (PyTorch's example);
  2. the same classic CNN and optimizer through mnist's trainer (device-resident uint8 data,
     per-batch normalization): what the data path alone buys;
  3. `mnist pretrain model=cnn`'s default recipe, through the same code as the command.
Each is tested on the 10,000 test images after every epoch (not timed). "Seconds to target" is the
training time until the first epoch whose test accuracy reaches --target. The mnist runs hold out
5% of the training images for validation; the conventional loop trains on all of them.
Then the whole `mnist pretrain model=cnn` command runs once more as a subprocess for its wall time
and peak memory, and `mnist --help` is timed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn

from mnist_cli.config.compose import compose_config
from mnist_cli.data.batches import BatchPrep
from mnist_cli.loggers.base import Tracker
from mnist_cli.models import build_model
from mnist_cli.models.classifier import Classifier
from mnist_cli.objectives.supervised import evaluate
from mnist_cli.run_dir import RunDir
from mnist_cli.stages.context import StageContext
from mnist_cli.stages.training import read_splits, train_and_test, training_task
from mnist_cli.training.runtime import autocast, pick_device, pick_precision, setup

sys.path.insert(0, str(Path(__file__).parent))
from pretrain_cnn import DEFAULT_DATA, cli_pretrain, help_seconds, measured, peak_child_rss_mb  # noqa: E402
from recipes import cpu_name  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "conf"


class ClassicBackbone(nn.Sequential):
    """PyTorch's example MNIST net up to its last hidden layer: conv32-conv64-maxpool-dropout-fc128."""

    feature_dim = 128

    def __init__(self):
        super().__init__(
            nn.Conv2d(1, 32, 3),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(0.25),
            nn.Flatten(),
            nn.Linear(9216, 128),
            nn.ReLU(),
        )

    def block_groups(self) -> list[list[nn.Module]]:
        return [[self]]


def classic_cnn() -> Classifier:
    """PyTorch's example MNIST net: its backbone, then dropout and fc10."""
    return Classifier(ClassicBackbone(), 10, head_dropout=0.5, name="classic")


class Curve:
    """Test accuracy after each epoch, and the training time when it first reached the target."""

    def __init__(self, target: float):
        self.target, self.accs, self.reached_at = target, [], None

    def record(self, acc: float, train_seconds: float) -> None:
        self.accs.append(acc)
        if self.reached_at is None and acc >= self.target:
            self.reached_at = train_seconds


def conventional(data: str, epochs: int, curve: Curve) -> float:
    """The loop users start from. Returns training images/s."""
    from torchvision import datasets, transforms

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "MNIST" / "raw"  # torchvision's layout, files un-gzipped as it expects
        raw.mkdir(parents=True)
        for gz in Path(data).glob("*.gz"):
            with gzip.open(gz) as src, open(raw / gz.stem, "wb") as dst:
                shutil.copyfileobj(src, dst)
        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
        train = datasets.MNIST(tmp, train=True, transform=transform)
        test = datasets.MNIST(tmp, train=False, transform=transform)
        train_loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True)
        test_loader = torch.utils.data.DataLoader(test, batch_size=1000)
        torch.manual_seed(0)
        device = pick_device("auto")  # as PyTorch's example does: batches are moved to the GPU one by one
        model = classic_cnn().to(device)
        optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
        seconds = images = 0
        for _ in range(epochs):
            model.train()
            tic = time.perf_counter()
            for x, y in train_loader:
                x, y = x.to(device), y.to(device)
                optimizer.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                optimizer.step()
                images += len(y)
            scheduler.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds += time.perf_counter() - tic
            model.eval()
            with torch.no_grad():
                correct = sum(int((model(x.to(device)).argmax(1).cpu() == y).sum()) for x, y in test_loader)
            curve.record(correct / len(test), seconds)
        return images / seconds


def through_mnist(cfg, model: Classifier | None, curve: Curve) -> dict:
    """Train with mnist's own stage code, testing after each epoch (outside the clock)."""
    device = setup(cfg)
    splits = read_splits(cfg)
    test = splits.test.to(device)
    prep, precision = BatchPrep(cfg.dataset), pick_precision(cfg.trainer.precision, device)
    seconds = 0.0

    def on_epoch_end(row: dict, trained: nn.Module) -> None:
        nonlocal seconds
        seconds += row["epoch_time_s"]
        with autocast(device, precision):
            curve.record(evaluate(trained, prep, test, cfg.trainer.eval_batch_size).acc, seconds)

    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(tmp)
        ctx = StageContext(cfg, run, [], None, Tracker("none", cfg, run, {}, False))
        cfg = ctx.settle(dataset=splits.dataset)
        model = model or build_model(cfg.model, len(cfg.dataset.classes))
        return train_and_test(ctx, training_task(cfg, model, splits, device), device, splits, on_epoch_end)


def peer_seconds_to(data: str, target: float) -> tuple[float | None, list[float]]:
    """Run the peer script until its first epoch at `target` test accuracy: (seconds from its
    launch to that epoch's line, or None; the accuracies it printed)."""
    script = Path(__file__).parent / "peer_mnist_main.py"
    tic = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(script), "--data", data], stdout=subprocess.PIPE, text=True)
    accs = []
    for line in proc.stdout:
        accs.append(float(line.split()[3]))
        if accs[-1] >= target:
            seconds = time.perf_counter() - tic
            proc.kill()
            proc.wait()
            return seconds, accs
    proc.wait()
    return None, accs


def breakdown(summary: dict) -> dict[str, float]:
    """Where a whole `mnist pretrain` process's seconds went: launch to the first optimizer step,
    training (with its validation), the final test (with the temperature's fit), and the rest to
    exit (the summary, then the interpreter's exit)."""
    at = summary["timeline"]
    return {
        "start-up": at["training_started_at"] - summary["launched_at"],
        "training": at["training_ended_at"] - at["training_started_at"],
        "final test": at["tested_at"] - at["training_ended_at"],
        "exit": summary["exited_at"] - at["tested_at"],
    }


def whole_processes(args: argparse.Namespace, console: Console) -> None:
    peer, accs = peer_seconds_to(args.data, args.target)
    console.print(f"peer: {' '.join(f'{a:.2%}' for a in accs)}")
    table = Table(
        title=f"Whole processes on {args.data}, {cpu_name()}: the peer to {args.target:.1%}, mnist to its end"
    )
    columns = ("run", "precision", "wall s", "start-up", "training", "final test", "exit", "test accuracy")
    for column in (*columns, "peak RSS MB", "x sooner than the peer"):
        table.add_column(column, justify="left" if column == "run" else "right")
    table.add_row(
        "peer_mnist_main.py, launch to first epoch >= target",
        "fp32",
        f"{peer:.1f}" if peer else "not reached",
        *[""] * 4,
        f"{accs[-1]:.2%}",
        "",
        "1.0x",
    )
    recipes = {"default": [], **{name: rest.split() for name, _, rest in (r.partition("=") for r in args.recipe)}}
    with tempfile.TemporaryDirectory() as kept:
        for name, overrides in recipes.items():
            for seed in args.seeds:
                wall, summary = cli_pretrain(args.data, *overrides, f"trainer.seed={seed}", cwd=Path(kept))
                table.add_row(
                    f"{name}: mnist pretrain {' '.join(overrides)}, seed {seed}, whole command",
                    summary["precision"],
                    f"{wall:.1f}",
                    *[f"{seconds:.2f}" for seconds in breakdown(summary).values()],
                    f"{summary['test_acc']:.2%}",
                    f"{summary['peak_rss_mb']:.0f}",
                    f"{peer / wall:.1f}x" if peer else "-",
                )
        root = Path(args.data).expanduser().resolve()
        result, process = measured(["eval", f"ckpt={summary['run_dir']}", f"dataset.root={root}"], Path(kept))
        if result.returncode != 0:
            sys.exit(f"mnist eval failed:\n{result.stderr}")
        [evaluated] = [json.loads(f.read_text()) for f in (Path(kept) / "outputs" / "eval").glob("*/eval.json")]
    table.add_row(
        f"mnist eval ckpt=<the last run>, whole command ({evaluated['test_images']:,} test images, figures)",
        "",
        f"{process['exited_at'] - process['launched_at']:.1f}",
        *[""] * 4,
        f"{evaluated['test_acc']:.2%}",
        f"{process['peak_rss_mb']:.0f}",
        "",
    )
    table.add_row("mnist --help (median of 5)", "", f"{help_seconds():.2f}", *[""] * 7)
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=6, help="epochs of the two classic-CNN runs")
    parser.add_argument("--target", type=float, default=0.98)
    parser.add_argument("--whole", action="store_true", help="compare whole processes with the peer script")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="--whole: seeds of mnist's runs")
    parser.add_argument(
        "--recipe",
        action="append",
        default=[],
        metavar='NAME="OVERRIDES"',
        help="--whole: a recipe besides the default",
    )
    args = parser.parse_args()
    console = Console(width=200)
    if args.whole:
        whole_processes(args, console)
        return
    rows = []

    console.print("[bold]1/3 conventional loop[/]")
    curve = Curve(args.target)
    speed = conventional(args.data, args.epochs, curve)
    rows.append(("conventional: DataLoader, per-sample transforms, classic CNN, Adadelta", speed, curve))

    console.print("[bold]2/3 classic CNN + Adadelta through mnist's trainer[/]")
    classic = compose_config(
        f"dataset.root={args.data}",
        "dataset.download=false",
        "dataset.augment.enabled=false",
        "optimizer=adadelta",
        "scheduler=step",
        "scheduler.gamma=0.7",
        "trainer.batch_size=64",
        f"trainer.epochs={args.epochs}",
        "trainer.label_smoothing=0",
        "model.name=classic_cnn",
    )
    curve = Curve(args.target)
    results = through_mnist(classic, classic_cnn(), curve)
    rows.append(("classic CNN + Adadelta, mnist trainer (data path only)", results["images_per_s"], curve))

    console.print("[bold]3/3 mnist pretrain model=cnn (default recipe)[/]")
    curve = Curve(args.target)
    results = through_mnist(compose_config(f"dataset.root={args.data}", "dataset.download=false"), None, curve)
    rows.append(("mnist pretrain model=cnn, default fast recipe", results["images_per_s"], curve))

    wall, summary = cli_pretrain(args.data)
    base_speed, base_curve = rows[0][1], rows[0][2]
    table = Table(
        title=f"Training speed on {args.data}, {torch.get_num_threads()} CPU threads, target {args.target:.0%} test accuracy"
    )
    for column in (
        "run",
        "train images/s",
        "x baseline",
        f"s to {args.target:.0%}",
        "x faster",
        "epochs: test accuracy",
    ):
        table.add_column(column, justify="left" if column.startswith(("run", "epochs")) else "right")
    for name, speed, curve in rows:
        reached = f"{curve.reached_at:.1f}" if curve.reached_at is not None else "not reached"
        faster = (
            f"{base_curve.reached_at / curve.reached_at:.1f}x" if curve.reached_at and base_curve.reached_at else "-"
        )
        table.add_row(
            name,
            f"{speed:.0f}",
            f"{speed / base_speed:.1f}x",
            reached,
            faster,
            " ".join(f"{a:.2%}" for a in curve.accs),
        )
    console.print(table)
    console.print(
        f"whole `mnist pretrain model=cnn` command: {wall:.1f} s wall, test accuracy {summary['test_acc']:.2%}, "
        f"peak memory (max RSS) {peak_child_rss_mb():.0f} MB; `mnist --help`: {help_seconds() * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
