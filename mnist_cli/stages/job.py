"""The Hydra task every stage runs in: validate the config (a sweep's job; a single run was checked
before Hydra started), take a resumed run's saved config, start the tracker (logger=...), run the
stage (the composed config's `stage.run`) with its StageContext, and record the outcome in the run
directory's summary.json."""

from __future__ import annotations

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
from mnist_cli.config.validate import validate
from mnist_cli.errors import EXIT_USAGE, UserError, error_line
from mnist_cli.loggers.base import Tracker
from mnist_cli.run_dir import RunDir
from mnist_cli.stages.context import StageContext
from mnist_cli.stages.resume import resumed_config
from mnist_cli.targets import build
from mnist_cli.training import distributed


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "mnist_cli": __version__}
    for name in ("torch", "torchvision", "hydra-core"):
        found[name] = metadata.version(name)
    return found


def run_job(cfg: DictConfig) -> float | None:
    """Run one job; return the metric a sweeper optimizes (cfg.metric: by default the best
    validation accuracy, for eval the test accuracy), or None when the job failed."""
    hydra_cfg = HydraConfig.get()
    sweep = hydra_cfg.mode == RunMode.MULTIRUN
    overrides = list(hydra_cfg.overrides.task)
    run = RunDir(hydra_cfg.runtime.output_dir, writable=distributed.is_main())
    started = time.time()
    now = datetime.now().isoformat(timespec="seconds")
    summary: dict[str, Any] = {
        "status": "running",
        "stage": cfg.stage.name,
        "run_dir": str(run.path),
        "overrides": overrides,
        "started_at": now,
    }
    resuming = cfg.resume is not None
    tracker = None
    try:
        if sweep:  # a single run's config was validated by config/checks.py
            validate(cfg)
        resume = None
        if resuming:
            cfg, resume = resumed_config(cfg, run, overrides)
            run.remove_temporaries()
            summary = {**(run.read_summary() or summary), "status": "running", "resumed_at": now}
        tracker = (
            build(cfg.logger, config=cfg, run=run, summary=summary, resumed=resuming)
            if run.writable  # another rank of a torchrun job: rank 0 keeps the record
            else Tracker("none", cfg, run, summary, resuming)
        )
        run.write_summary(summary)
        ctx = StageContext(cfg, run, overrides, resume, tracker)
        results = build(cfg.stage.run, ctx)
        if not ctx.settled:
            raise RuntimeError(f"{cfg.stage.run._target_} ended without settling its config (StageContext.settle)")
        summary.update(status="completed", metric=cfg.metric, **results)
        return results.get(cfg.metric)
    except UserError as e:
        summary.update(status="failed", error=str(e))
        print(error_line(str(e)), file=sys.stderr)
        if sweep:  # the sweep goes on; report/sweeps.py reports the failure
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
                    print(error_line(str(e)), file=sys.stderr)
        if tracker is not None:
            tracker.finish(summary)
