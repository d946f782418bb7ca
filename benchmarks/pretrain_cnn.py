"""Benchmark the foundation's promise: the default `mnist pretrain model=cnn`, with only
dataset.root changed, on real MNIST (10k training images). Prints one table: test accuracy,
wall time of the whole command, training images/s, peak memory, and `mnist --help` start-up.

    python benchmarks/pretrain_cnn.py [--data ../shared/data/mnist-10k] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]


def timed(args: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    tic = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "mnist_cli", *args], cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - tic, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mnist-10k"))
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    rows = []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            wall, result = timed(["pretrain", "model=cnn", f"dataset.root={args.data}"], Path(tmp))
            if result.returncode != 0:
                sys.exit(f"mnist pretrain failed:\n{result.stderr}")
            [run] = (Path(tmp) / "outputs" / "pretrain").iterdir()
            summary = json.loads((run / "summary.json").read_text())
        rows.append((summary["test_acc"], wall, summary["images_per_s"], summary["epochs_run"]))
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    help_times = [timed(["--help"], REPO)[0] for _ in range(5)]

    table = Table(title=f"mnist pretrain model=cnn on {args.data} ({args.repeats} run(s))")
    for column in ("measure", "value", "target"):
        table.add_column(column)
    accs, walls, speeds, epochs = zip(*rows)
    table.add_row("test accuracy", f"{statistics.mean(accs):.2%} (min {min(accs):.2%})", ">= 98.8%")
    table.add_row("wall time, whole command", f"{statistics.mean(walls):.1f} s (max {max(walls):.1f} s)", "< 60 s")
    table.add_row("training images/s", f"{statistics.mean(speeds):.0f}", "")
    table.add_row("epochs", str(epochs[0]), "")
    table.add_row("peak memory (max RSS)", f"{peak_mb:.0f} MB", "")
    table.add_row("mnist --help", f"{statistics.median(help_times) * 1000:.0f} ms (median of 5)", "< 1 s")
    Console().print(table)


if __name__ == "__main__":
    main()
