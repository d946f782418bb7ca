"""The Hydra task that every stage runs in: validate the config (a sweep's job; a single run was
checked before Hydra started), take a resumed run's saved config, hand the config to the stage's
runner (config/stages.py names it), and record the outcome in the run directory's summary.json."""

from __future__ import annotations

import importlib
import platform
import signal
import sys
import time
from datetime import datetime
from importlib import metadata
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mnist_cli import __version__
from mnist_cli.config.stages import stages
from mnist_cli.config.validate import validate
from mnist_cli.errors import EXIT_USAGE, UserError
from mnist_cli.run_dir import RunDir
from mnist_cli.stages.resume import resumed_config
from mnist_cli.training import distributed
from mnist_cli.training.loggers import start_tracking


def task_overrides() -> list[str]:
    """The key=value overrides given on the command line for this job."""
    return list(HydraConfig.get().overrides.task)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "mnist_cli": __version__}
    for name in ("torch", "torchvision", "hydra-core"):
        found[name] = metadata.version(name)
    return found


def run_job(cfg: DictConfig) -> float | None:
    """Run one job; return the metric a sweeper optimizes (cfg.metric: by default the best
    validation accuracy, for eval the test accuracy), or None when the job failed."""
    hydra_cfg = HydraConfig.get()
    run = RunDir(hydra_cfg.runtime.output_dir, writable=distributed.is_main())
    started = time.time()
    now = datetime.now().isoformat(timespec="seconds")
    summary: dict[str, Any] = {
        "status": "running",
        "stage": cfg.stage.name,
        "run_dir": str(run.path),
        "overrides": task_overrides(),
        "started_at": now,
    }
    resuming = cfg.resume is not None
    tracking = None
    try:
        if hydra_cfg.mode == RunMode.MULTIRUN:  # a single run's config was validated by config/checks.py
            validate(cfg)
        resume = None
        if resuming:
            cfg, resume = resumed_config(cfg, run, task_overrides())
            run.remove_temporaries()
            summary = {**(run.read_summary() or summary), "status": "running", "resumed_at": now}
        tracking = start_tracking(cfg, run, summary, resuming)  # logger=mlflow|wandb: the job's run there
        run.write_summary(summary)
        runner = importlib.import_module(stages()[cfg.stage.name].runner)
        results = runner.run(cfg, run, resume)
        summary.update(status="completed", metric=cfg.metric, **results)
        return results.get(cfg.metric)
    except UserError as e:
        summary.update(status="failed", error=str(e))
        print(f"mnist: error: {e}", file=sys.stderr)
        if hydra_cfg.mode == RunMode.MULTIRUN:  # the sweep goes on; report/sweeps.py reports the failure
            return None
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: resume=<run dir> continues from the last checkpoint
        summary.update(status="interrupted", signal=signal.Signals(getattr(e, "signum", signal.SIGINT)).name)
        raise
    finally:
        summary.update(
            finished_at=datetime.now().isoformat(timespec="seconds"),
            wall_time_s=round(time.time() - started, 3),
            versions=versions(),
        )
        if not (resuming and summary["status"] == "failed"):  # a refused resume leaves the run's record alone
            try:
                run.write_summary(summary)
            except UserError as e:  # e.g. the disk is full; said once, if the job's own error did not say it
                if summary["status"] != "failed":
                    print(f"mnist: error: {e}", file=sys.stderr)
        if tracking is not None:
            tracking.finish(summary)
