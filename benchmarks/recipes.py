"""Run training recipes over seeds and precisions and print the spread: min / mean / max test accuracy,
wall time of the whole `mnist pretrain` command and training images/s (the mean over seeds), per
recipe and precision. An accuracy claim is only as good as its worst seed.

    python benchmarks/recipes.py [--data ../shared/data/mnist] [--seeds 0 1 2 3 4]
        [--precisions auto fp32] [--recipe NAME="override override ..."]... [--ensemble] [--threads 1]

Without --recipe: the default recipe (`mnist pretrain`, dataset.root only). Each --recipe is a name
and the overrides it adds, e.g. --recipe record="experiment=cnn_record". --ensemble: also the test
accuracy of each row's seeds as one ensemble (`mnist eval ckpt=[...]`, their averaged probabilities).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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


def cpu_name() -> str:
    """The CPU's model name, its core count and the instructions that decide precision=auto
    (AMX or AVX512-BF16: bf16; else fp32)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    native = [isa for isa in ("amx_bf16", "avx512_bf16") if isa in flags] or (["avx2"] if "avx2" in flags else [])
    return f"{name or platform.processor() or platform.machine()}, {os.cpu_count()} cores, {' '.join(native)}"


def run(cwd: Path, overrides: list[str], stage: str = "pretrain") -> dict:
    """One whole `mnist <stage>` command: its summary.json and wall time."""
    before = set((cwd / "outputs" / stage).glob("*")) if (cwd / "outputs" / stage).exists() else set()
    tic = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "mnist_cli", stage, *overrides], cwd=cwd, capture_output=True, text=True
    )
    wall = time.perf_counter() - tic
    if result.returncode != 0:
        raise SystemExit(f"mnist {stage} {' '.join(overrides)} failed:\n{result.stderr}")
    [run_dir] = set((cwd / "outputs" / stage).glob("*")) - before
    return {**json.loads((run_dir / "summary.json").read_text()), "wall_s": wall}


def ensemble_accuracy(cwd: Path, runs: list[dict]) -> float:
    """`mnist eval` of the runs' checkpoints as one ensemble: its test accuracy."""
    members = ",".join(run["run_dir"] for run in runs)
    result = subprocess.run(
        [sys.executable, "-m", "mnist_cli", "eval", f"ckpt=[{members}]"], cwd=cwd, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"mnist eval of the ensemble failed:\n{result.stderr}")
    run_dir = max((cwd / "outputs" / "eval").glob("*"), key=lambda p: p.stat().st_mtime)
    return json.loads((run_dir / "eval.json").read_text())["test_acc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--precisions", nargs="+", default=["auto", "fp32"])
    parser.add_argument("--recipe", action="append", default=[], metavar='NAME="OVERRIDES"')
    parser.add_argument("--ensemble", action="store_true", help="also each row's seeds as one ensemble")
    parser.add_argument("--threads", type=int, help="trainer.num_threads of every run (two scripts side by side: 1)")
    args = parser.parse_args()
    args.data = str(Path(args.data).resolve())  # the runs start in a temporary folder
    recipes = {"default": []}
    if args.recipe:
        recipes = {name: overrides.split() for name, _, overrides in (r.partition("=") for r in args.recipe)}

    console = Console(width=200)
    table = Table(title=f"mnist pretrain on {args.data}, seeds {' '.join(map(str, args.seeds))}; {cpu_name()}")
    columns = ["recipe", "precision", "test acc min", "mean", "max", "per seed", "best epochs", "wall s min-max"]
    columns += ["train img/s"]
    for column in columns + (["ensemble"] if args.ensemble else []):
        table.add_column(column, justify="left" if column in ("recipe", "per seed", "best epochs") else "right")
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in recipes.items():
            for precision in args.precisions:
                runs = []
                for seed in args.seeds:
                    extra = [f"dataset.root={args.data}", f"trainer.precision={precision}", f"trainer.seed={seed}"]
                    extra += [f"trainer.num_threads={args.threads}"] if args.threads else []
                    runs.append(run(Path(tmp), [*overrides, *extra]))
                    console.print(
                        f"{name} {precision} seed {seed}: {runs[-1]['test_acc']:.2%} in {runs[-1]['wall_s']:.1f} s"
                    )
                accs = [r["test_acc"] for r in runs]
                walls = [r["wall_s"] for r in runs]
                table.add_row(
                    name,
                    f"{precision} ({runs[0]['precision']})",
                    f"{min(accs):.2%}",
                    f"{statistics.mean(accs):.2%}",
                    f"{max(accs):.2%}",
                    " ".join(f"{a:.2%}" for a in accs),
                    " ".join(str(r["best_epoch"]) for r in runs),
                    f"{min(walls):.1f}-{max(walls):.1f}",
                    f"{statistics.mean(r['images_per_s'] for r in runs):,.0f}",
                    *([f"{ensemble_accuracy(Path(tmp), runs):.2%}"] if args.ensemble else []),
                )
    console.print(table)


if __name__ == "__main__":
    main()
