"""The tracker every logger= option is (logger=none: this one, which adds nothing to the run's own
files), and what the trackers share: the numbers of a row or summary, the run's files to keep, the
config as flat params, mnist-cli's own commit."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_cli.run_dir import RunDir

ARTIFACTS = ("config.yaml", "summary.json", "metrics.csv", "eval.json", "skipped.txt")  # and every PNG


class Tracker:
    """A job's record beyond its run directory: started before the stage runs (`config`: the job's
    config as composed; `summary`: the job's summary.json so far, where a tracker may note its own
    run's id for a `resumed` job to find), told the config the stage settled on, fed each epoch's
    metrics row, finished with the summary."""

    def __init__(self, name: str, config: DictConfig, run: RunDir, summary: dict[str, Any], resumed: bool):
        self.name = name
        self.run = run
        self.resumed = resumed

    def settled(self, config: DictConfig) -> None:
        """The config the stage settled on: what ran, as the run's config.yaml records it."""

    def log_epoch(self, row: dict[str, Any]) -> None:
        """One epoch's metrics row (step = its epoch)."""

    def finish(self, summary: dict[str, Any]) -> None:
        """The job's outcome: its summary (status, final numbers)."""


def numbers(values: dict[str, Any], *leave_out: str) -> dict[str, float]:
    """The numbers among `values` (a metrics row, a summary), without `leave_out` and what was not
    measured (None) or is a flag."""
    return {
        k: float(v)
        for k, v in values.items()
        if k not in leave_out and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def git_commit() -> str | None:
    try:
        found = subprocess.run(  # mnist-cli's own commit, when it runs from a git checkout
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found.stdout.strip() if found.returncode == 0 else None


def final_labels(summary: dict[str, Any]) -> dict[str, str]:
    """The summary's words a tracker records beside them (status, objective, device, precision)."""
    return {k: str(summary[k]) for k in ("status", "objective", "device", "precision") if summary.get(k) is not None}


def run_files(run: RunDir) -> list[Path]:
    """The run directory's files a tracker keeps: ARTIFACTS and the PNGs, those that exist."""
    return [f for f in [*(run.path / name for name in ARTIFACTS), *sorted(run.path.glob("*.png"))] if f.is_file()]


def flat_params(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as dotted keys (trainer.epochs) and their values as text."""
    flat: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = str(node)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat
