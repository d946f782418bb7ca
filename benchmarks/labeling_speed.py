"""How long the labeling tools take: `mnist select` on MNIST's whole training split by each strategy,
and how fast the labeling page answers.

    python benchmarks/labeling_speed.py [--data ../shared/data/mnist] [--ckpt <run>] [--budget 100]
        [--strategies random margin entropy bald k_center typical] [--answers 100]

Without --ckpt, first trains the default CNN on 10 labels a class (`mnist pretrain
dataset.labels_per_class=10`), so the pool is the other 56,900 training images (its 3,000
validation images left out). Then each strategy is one whole `mnist select` command: its wall time
(process start, reading the IDX files, the model over the pool, the pick, the files written) and
the stage's own CPU seconds (select.json). bald's MC-dropout passes run through the head only
(the backbone once). The page: `mnist label` on a folder of 28x28 PNG files, --answers POST /answer
requests one after another (each a move and an fsynced labels.csv row), then as many undos; their
latency as the client sees it (median, 95th percentile, max).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from pretrain_cnn import DEFAULT_DATA  # noqa: E402
from recipes import cpu_name  # noqa: E402


def mnist(cwd: Path, *args: str) -> float:
    """Run `mnist ARGS` in `cwd`; its wall time."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mnist_cli", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stderr)
    return time.perf_counter() - started


def page_latency(folder: Path, answers: int) -> tuple[list[float], list[float]]:
    """Milliseconds per POST /answer and per POST /undo against `mnist label dir=<folder>`."""
    import httpx
    import numpy as np
    from PIL import Image

    folder.mkdir()
    for i in range(answers):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (28, 28), dtype=np.uint8)).save(
            folder / f"{i:04d}.png"
        )
    process = subprocess.Popen(
        [sys.executable, "-m", "mnist_cli", "label", f"dir={folder}", "label.port=0"],
        cwd=folder.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = next(m.group() for line in process.stdout if (m := re.search(r"http://127\.0\.0\.1:\d+/", line)))
        with httpx.Client() as client:
            items = client.get(url + "items").json()["items"]
            answered, undone = [], []
            for item in items:
                started = time.perf_counter()
                client.post(url + "answer", json={"file": item["file"], "label": "3"}).raise_for_status()
                answered.append(1000 * (time.perf_counter() - started))
            for _ in items:
                started = time.perf_counter()
                client.post(url + "undo").raise_for_status()
                undone.append(1000 * (time.perf_counter() - started))
        return answered, undone
    finally:
        process.terminate()
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--ckpt", default=None, help="a run trained with limited labels (default: train one)")
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument(
        "--strategies", nargs="+", default=["random", "margin", "entropy", "bald", "k_center", "typical"]
    )
    parser.add_argument("--answers", type=int, default=100)
    args = parser.parse_args()
    table = Table(title=f"mnist select on MNIST's training split, budget {args.budget}; {cpu_name()}")
    for column in ("strategy", "pool images", "wall time of the command", "stage CPU s"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        ckpt = args.ckpt
        if ckpt is None:
            mnist(cwd, "pretrain", f"dataset.root={args.data}", "dataset.labels_per_class=10")
            ckpt = str(next((cwd / "outputs" / "pretrain").iterdir()))
        for strategy in args.strategies:
            wall = mnist(
                cwd, "select", f"ckpt={ckpt}", f"dataset.root={args.data}", f"select.strategy={strategy}",
                f"select.budget={args.budget}",
            )  # fmt: skip
            run = sorted((cwd / "outputs" / "select").iterdir())[-1]
            record = json.loads((run / "select.json").read_text())
            table.add_row(strategy, f"{record['pool_images']:,}", f"{wall:.1f} s", f"{record['cpu_s']}")
        answered, undone = page_latency(cwd / "to_label", args.answers)
    Console(width=160).print(table)
    page = Table(title=f"mnist label: {args.answers} answers, then as many undos, one after another")
    for column in ("request", "median ms", "95th percentile ms", "max ms"):
        page.add_column(column, justify="right")
    for name, times in (("POST /answer", answered), ("POST /undo", undone)):
        p95 = statistics.quantiles(times, n=20)[-1]
        page.add_row(name, f"{statistics.median(times):.1f}", f"{p95:.1f}", f"{max(times):.1f}")
    Console(width=160).print(page)


if __name__ == "__main__":
    main()
