"""Benchmark the foundation's promise: the default `mnist pretrain model=cnn`, with only
dataset.root changed, on real MNIST (the full 60,000 training images by default). Prints one table:
test accuracy, wall time of the whole command, training images/s, peak memory, and `mnist --help`
start-up.

    python benchmarks/pretrain_cnn.py [--data ../shared/data/mnist] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
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
# The full MNIST (60,000 training images), where every published figure is measured.
DEFAULT_DATA = str(REPO.parent / "shared" / "data" / "mnist")


def timed(args: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    tic = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "mnist_cli", *args], cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - tic, result


def measured(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """Run `mnist ARGS` in `cwd`: its result, and when it was launched and exited (unix seconds)
    with its own peak memory (max RSS, MB)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        launched = time.time()
        proc = subprocess.Popen([sys.executable, "-m", "mnist_cli", *args], cwd=cwd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        exited = time.time()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())
    return result, {"launched_at": launched, "exited_at": exited, "peak_rss_mb": usage.ru_maxrss / 1024}


def cli_pretrain(data: str, *overrides: str, cwd: Path | None = None) -> tuple[float, dict]:
    """Run `mnist pretrain model=cnn dataset.root=DATA` in `cwd` (None: a scratch folder, removed
    after): (wall s, summary with the process's launched_at, exited_at and peak_rss_mb added)."""
    with tempfile.TemporaryDirectory() as tmp:
        where = cwd or Path(tmp)
        runs = where / "outputs" / "pretrain"
        before = set(runs.iterdir()) if runs.is_dir() else set()
        root = Path(data).expanduser().resolve()  # the run's folder is not this one
        result, process = measured(["pretrain", "model=cnn", f"dataset.root={root}", *overrides], where)
        if result.returncode != 0:
            sys.exit(f"mnist pretrain failed:\n{result.stderr}")
        [run] = set(runs.iterdir()) - before
        summary = {**json.loads((run / "summary.json").read_text()), **process}
        return process["exited_at"] - process["launched_at"], summary


def peak_child_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def help_seconds(repeats: int = 5) -> float:
    """Median wall time of `mnist --help`."""
    return statistics.median(timed(["--help"], REPO)[0] for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    runs = [cli_pretrain(args.data) for _ in range(args.repeats)]
    walls = [wall for wall, _ in runs]
    accs = [s["test_acc"] for _, s in runs]
    speeds = [s["images_per_s"] for _, s in runs]

    table = Table(title=f"mnist pretrain model=cnn on {args.data} ({args.repeats} run(s))")
    for column in ("measure", "value", "target"):
        table.add_column(column)
    table.add_row("test accuracy", f"{statistics.mean(accs):.2%} (min {min(accs):.2%})", ">= 98.8%")
    table.add_row("wall time, whole command", f"{statistics.mean(walls):.1f} s (max {max(walls):.1f} s)", "< 60 s")
    table.add_row("training images/s", f"{statistics.mean(speeds):.0f}", "")
    table.add_row("epochs", str(runs[0][1]["epochs_run"]), "")
    table.add_row("peak memory (max RSS)", f"{peak_child_rss_mb():.0f} MB", "")
    table.add_row("mnist --help", f"{help_seconds() * 1000:.0f} ms (median of 5)", "< 1 s")
    Console().print(table)


if __name__ == "__main__":
    main()
