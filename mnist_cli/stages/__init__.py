"""The Hydra task: validate the config, hand it to the stage's runner, and record the outcome in
the run directory's summary.json. Each runner lives in its own module, named by its stage's
conf/stage/<name>.yaml (config/stages.py): pretrain.py, finetune.py, evaluate.py, predict.py,
export.py; training.py is what pretrain and finetune share.
"""

from __future__ import annotations

import importlib
import logging
import platform
import signal
import sys
import time
from datetime import datetime
from importlib import metadata
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf

from mnist_cli import __version__
from mnist_cli.config.stages import stages
from mnist_cli.config.validate import validate
from mnist_cli.errors import EXIT_USAGE, UserError
from mnist_cli.run_dir import RunDir
from mnist_cli.training import distributed
from mnist_cli.training.loggers import MlflowJob

log = logging.getLogger(__name__)


def task_overrides() -> list[str]:
    """The key=value overrides given on the command line for this job."""
    return list(HydraConfig.get().overrides.task)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "mnist_cli": __version__}
    for name in ("torch", "torchvision", "hydra-core"):
        found[name] = metadata.version(name)
    return found


# What a resumed run may change: where its files are and how it runs, not what it learns.
WHERE_AND_HOW = (
    "dataset.root",
    "dataset.download",
    "trainer.device",
    "trainer.num_threads",
    "trainer.log_every_steps",
    "outputs_root",
)


ABSENT = object()


def plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def same_value(cfg: DictConfig, saved: DictConfig, key: str) -> bool:
    """Whether an override of `key` leaves the saved run's value as it was (a checkpoint argument:
    whether it names the same file). A preset that is no key of the config (experiment=...) is
    never the same: its values would be silently ignored."""
    if OmegaConf.select(cfg, key, default=ABSENT) is ABSENT:
        return False
    given, before = plain(OmegaConf.select(cfg, key)), plain(OmegaConf.select(saved, key))
    if key in ("ckpt", "teacher") and isinstance(given, str):
        from mnist_cli.training.checkpoint import resolve_checkpoint

        return str(resolve_checkpoint(given, cfg.outputs_root)) == before
    return given == before


def resumed_config(cfg: DictConfig, run: RunDir) -> tuple[DictConfig, dict[str, Any]]:
    """The config and last checkpoint of the run being resumed."""
    from mnist_cli.training.checkpoint import load_checkpoint

    summary = run.read_summary() or {}
    if summary.get("status") == "completed":
        raise UserError(
            f"resume={run.path}: that run already finished; start a new one or finetune it with ckpt={run.path}"
        )
    ckpt = load_checkpoint(run.last_ckpt)
    # the saved config over this command's: keys a newer mnist added get their defaults
    saved = OmegaConf.merge(OmegaConf.to_container(cfg, resolve=True), ckpt["config"])
    if saved.stage.name != cfg.stage.name:
        raise UserError(
            f"resume={run.path} is a {saved.stage.name} run; resume it with `mnist {saved.stage.name} resume=...`"
        )
    original = set(summary.get("overrides", []))  # the command line that started the run
    changed = []
    for override in task_overrides():
        key = override.lstrip("+~").partition("=")[0]
        if override in original or key in ("resume", "stage") or same_value(cfg, saved, key):
            continue
        if key in WHERE_AND_HOW:
            OmegaConf.update(saved, key, plain(OmegaConf.select(cfg, key)), force_add=True)
        else:
            before = plain(OmegaConf.select(saved, key, default="not given"))
            changed.append(f"{override} (saved: {before})")
    if changed:
        raise UserError(
            f"resume continues a run with its saved config, and these overrides change it: {'; '.join(changed)}; "
            f"drop them (only {', '.join(WHERE_AND_HOW)} may differ)"
        )
    saved.resume = cfg.resume
    return saved, ckpt


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
        validate(cfg)
        resume = None
        if resuming:
            cfg, resume = resumed_config(cfg, run)
            run.remove_temporaries()
            summary = {**(run.read_summary() or summary), "status": "running", "resumed_at": now}
        tracking = MlflowJob.start(cfg, run, summary, resuming)  # logger=mlflow: the job's MLflow run
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
