"""A sweep's outcome, read back from its jobs' summary.json files after the last job ends, so
that it is the same whichever launcher ran the jobs (here, in other processes, on a cluster):
`mnist ... -m` then exits non-zero naming the jobs that failed (their run dirs say why)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mnist_cli.errors import EXIT_FAILED, error_line
from mnist_cli.report.runs import find_runs, load_run


class SweepOutcome(Callback):
    """Registered in conf/config.yaml under hydra.callbacks."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Exit with EXIT_FAILED and a line naming each failed job, when any failed."""
        sweep = Path(config.hydra.sweep.dir)
        failed = []
        for run in (load_run(path, sweep) for path in find_runs(sweep)) if sweep.is_dir() else ():
            if run.status == "failed":
                overrides = " ".join(f"{k}={v}" for k, v in run.overrides.items())
                failed.append(f"job {run.label} ({overrides}): {run.summary.get('error', 'see its run.log')}")
        if failed:
            print(error_line(f"{len(failed)} job(s) failed: " + "; ".join(failed)), file=sys.stderr)
            sys.exit(EXIT_FAILED)
