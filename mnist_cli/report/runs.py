"""`mnist report [DIR ...]`: compare runs. Each DIR is a run directory, or a folder holding run
directories (a sweep, a stage's outputs); with none, the latest sweep under outputs/multirun.

Prints a table of the runs ranked by their metric (the overrides that differ between them,
val/test accuracy, epochs, wall time, status, and eval's confidently_wrong.csv and embedding.png
where a run has them), and writes report.csv, learning_curves.png and,
when runs differ in their overrides, metric_vs_params.png next to the runs (or into --out).
Reads only summary.json and metrics.jsonl: no torch, and failed or unfinished runs are listed too.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mnist_cli.errors import UserError
from mnist_cli.run_dir import csv_text, natural_key, unique_dir, write_text

SKIP_DIRS = {".hydra", ".submitit", "checkpoints", "tensorboard"}
HEADERS = {
    "best_val_acc": "val acc",
    "test_acc": "test acc",
    "wall_time_s": "wall s",
    "holdout_acc": "holdout acc",
    "corrections_acc": "corrections acc",
}  # table headers of report.csv's columns


@dataclass
class Run:
    path: Path
    label: str  # the path relative to the folders reported on
    summary: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl rows

    @property
    def status(self) -> str:
        return self.summary.get("status", "unknown")

    @property
    def figures(self) -> str:
        """What an eval run drew for a person to look at, as its summary names them: its most
        confidently wrong images (a CSV) and its map of the test set's features."""
        embedding = self.summary.get("embedding") or {}
        return " ".join(name for name in (self.summary.get("confidently_wrong"), embedding.get("file")) if name)

    @property
    def gate(self) -> dict[str, Any]:
        """A gated finetune's two measures, before -> after (evaluation/gate.py), and its verdict."""
        found = self.summary.get("gate")
        if not found:
            return {"holdout_acc": "", "corrections_acc": "", "promote": ""}
        return {
            "holdout_acc": f"{found['holdout_acc_before']:.4f} -> {found['holdout_acc_after']:.4f}",
            "corrections_acc": f"{found['corrections_acc_before']:.4f} -> {found['corrections_acc_after']:.4f}",
            "promote": "yes" if self.summary.get("promote") else "no",
        }

    @property
    def overrides(self) -> dict[str, str]:
        """The command line's key=value overrides, without the stage that `mnist <stage>` adds."""
        pairs = (o.partition("=") for o in self.summary.get("overrides", []))
        return {key: value for key, _, value in pairs if key != "stage"}


@dataclass
class Report:
    runs: list[Run]  # ranked: best metric first, runs without it last
    metric: str
    swept: list[str]  # the override keys whose values differ between runs

    def value(self, run: Run) -> float | None:
        return run.summary.get(self.metric)

    def rows(self) -> list[dict[str, Any]]:
        """One row per run: the table's and report.csv's contents."""
        extra = [] if self.metric in ("best_val_acc", "test_acc") else [self.metric]
        drawn = any(run.figures for run in self.runs)
        gated = any("gate" in run.summary for run in self.runs)
        return [
            {
                "rank": rank,
                "run": run.label,
                "data": data_name(run.summary),
                **{key: run.overrides.get(key, "") for key in self.swept},
                **{key: run.summary.get(key) for key in (*extra, "best_val_acc", "test_acc")},
                **(run.gate if gated else {}),
                "epochs": run.summary.get("epochs_run"),
                "wall_time_s": run.summary.get("wall_time_s"),
                "status": run.status,
                **({"figures": run.figures} if drawn else {}),
                "error": run.summary.get("error", ""),
                "run_dir": str(run.path),
            }
            for rank, run in enumerate(self.runs, 1)
        ]


def find_runs(folder: Path) -> list[Path]:
    """Run directories (those with a summary.json) at or under `folder`, in name order."""
    if (folder / "summary.json").is_file():
        return [folder]
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        if "summary.json" in files:
            found.append(Path(root))
            dirs.clear()
    return sorted(found, key=natural_key)


def data_name(summary: dict[str, Any]) -> str:
    """The data set a run used and its classes, e.g. `folder (3: cat, dog, fish)`."""
    classes = summary.get("classes") or []
    shown = ", ".join(classes[:4]) + (", ..." if len(classes) > 4 else "")
    return f"{summary.get('dataset', '')} ({len(classes)}: {shown})" if classes else summary.get("dataset", "")


def latest_sweep(outputs_root: Path) -> Path:
    sweeps = (
        [p for p in (outputs_root / "multirun").glob("*") if p.is_dir()] if (outputs_root / "multirun").is_dir() else []
    )
    if not sweeps:
        raise UserError(
            f"no sweep under {outputs_root / 'multirun'}; name the runs to report: mnist report <run or sweep dir> ..."
        )
    return max(sweeps, key=natural_key)


def load_run(path: Path, base: Path) -> Run:
    label = str(path.relative_to(base)) if path != base else path.name
    try:
        summary = json.loads((path / "summary.json").read_text())
        metrics = path / "metrics.jsonl"
        history = [json.loads(line) for line in metrics.read_text().splitlines() if line] if metrics.is_file() else []
    except (OSError, ValueError) as e:
        return Run(path, label, {"status": "unreadable", "error": f"{type(e).__name__}: {e}"})
    return Run(path, label, summary, history)


def build_report(folders: list[Path], metric: str | None = None) -> Report:
    for folder in folders:
        if not folder.is_dir():
            raise UserError(
                f"{folder}: no such folder; pass run directories or sweep folders (e.g. outputs/multirun/<date>_<time>)"
            )
    paths = list(dict.fromkeys(path.resolve() for folder in folders for path in find_runs(folder)))
    if not paths:
        raise UserError(f"no runs (folders with a summary.json) under {', '.join(map(str, folders))}")
    base = Path(os.path.commonpath([folder.resolve() for folder in folders]))
    runs = [load_run(path, base) for path in paths]
    if metric is None:  # the metric the runs optimized (summary.json's "metric"), else validation accuracy
        metric = next(
            (run.summary["metric"] for run in runs if isinstance(run.summary.get("metric"), str)), "best_val_acc"
        )
    lower_is_better = metric.endswith("loss")

    def rank_key(run: Run) -> tuple:
        value = run.summary.get(metric)
        missing = not isinstance(value, (int, float))
        return (missing, 0.0 if missing else (value if lower_is_better else -value), natural_key(Path(run.label)))

    runs.sort(key=rank_key)
    keys = list(dict.fromkeys(key for run in runs for key in run.overrides))
    swept = [key for key in keys if len({run.overrides.get(key) for run in runs}) > 1]
    return Report(runs, metric, swept)


def print_table(report: Report, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from mnist_cli.report.console import console

    rows = report.rows()
    table = Table(title=title, title_justify="left")
    columns = [c for c in rows[0] if c not in ("error", "run_dir")]
    for column in columns:
        numeric = column in ("rank", "epochs", "wall_time_s") or column.endswith(("acc", "loss", "f1"))
        table.add_column(HEADERS.get(column, column), justify="right" if numeric else "left", overflow="fold")
    status_style = {"completed": "green", "failed": "red", "interrupted": "yellow"}
    for row in rows:
        cells = []
        for column in columns:
            value = row[column]
            if column == "status":
                value = f"[{status_style.get(value, 'dim')}]{value}[/]"
            elif isinstance(value, float):
                value = f"{value:.1f}" if column == "wall_time_s" else f"{value:.4f}"
            elif column in report.swept and re.fullmatch(r"-?\d*\.\d{5,}(e-?\d+)?", value):
                value = f"{float(value):.4g}"  # a sampled value: 0.006394262352347293 -> 0.006394
            cells.append("" if value is None else str(value))
        table.add_row(*cells)
    # On a terminal the table fits its width; into a file or pipe, one line per run.
    wide = console if console.is_terminal else Console(width=Console(width=1000).measure(table).maximum)
    wide.print(table)
    for row in rows:
        if row["error"]:
            console.print(f"[red]{row['run']}[/]: {row['error']}", highlight=False, soft_wrap=True)


def write_report(report: Report, out: Path) -> list[Path]:
    """report.csv and the plots, in `out`; returns the files written."""
    from mnist_cli.report import plots

    written = [out / "report.csv"]
    write_text(written[0], csv_text(report.rows()))
    curves = [run for run in report.runs if run.history]
    if curves:
        written.append(out / "learning_curves.png")
        plots.learning_curves({run.label: run.history for run in curves}, written[-1])
    semi = [run for run in curves if "pseudo_label_share" in run.history[-1]]
    if semi:
        written.append(out / "pseudo_labels.png")
        plots.pseudo_label_shares({run.label: run.history for run in semi}, written[-1])
    if report.swept:
        points = {key: [(run.overrides.get(key), report.value(run)) for run in report.runs] for key in report.swept}
        written.append(out / "metric_vs_params.png")
        plots.metric_vs_params(points, report.metric, written[-1])
    return written


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mnist report",
        description="Compare runs: a table ranked by their metric, report.csv, and PNG plots of the learning "
        "curves and of the metric against each swept parameter.",
    )
    parser.add_argument(
        "dirs",
        nargs="*",
        type=Path,
        metavar="DIR",
        help="run directories or folders of them (sweeps); default: the latest sweep under OUTPUTS_ROOT/multirun",
    )
    parser.add_argument("--metric", help="rank by this key of summary.json (default: the metric the runs optimized)")
    parser.add_argument(
        "--out",
        type=Path,
        help="where report.csv and the plots go (default: the one DIR given, else OUTPUTS_ROOT/reports/<date>_<time>)",
    )
    parser.add_argument("--outputs-root", type=Path, default=Path("outputs"), help="default: outputs")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    folders = args.dirs or [latest_sweep(args.outputs_root)]
    report = build_report(folders, args.metric)
    out = args.out or (
        folders[0]
        if len(folders) == 1
        else Path(unique_dir(str(args.outputs_root / "reports" / f"{datetime.now():%Y-%m-%d_%H-%M-%S}")))
    )
    order = "lowest" if report.metric.endswith("loss") else "highest"
    print_table(
        report, f"{len(report.runs)} runs in {', '.join(map(str, folders))}, ranked by {report.metric} ({order} first)"
    )
    for path in write_report(report, out):
        print(f"wrote {path}")
