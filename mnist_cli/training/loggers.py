"""Where a run's metrics go besides its own files (metrics.jsonl, metrics.csv, summary.json, which
are always written): nowhere else (logger=none), TensorBoard (logger=tensorboard: each epoch's
metrics), or an experiment tracker that holds the whole job as one of its runs: MLflow
(logger=mlflow, `MlflowJob`) or Weights & Biases (logger=wandb, `WandbJob`)."""

from __future__ import annotations

import logging
import netrc
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_cli.errors import UserError
from mnist_cli.run_dir import RunDir

EpochCallback = Callable[[dict[str, Any], Any], None]
ARTIFACTS = ("config.yaml", "summary.json", "metrics.csv", "eval.json", "skipped.txt")  # and every PNG


def numbers(values: dict[str, Any], *leave_out: str) -> dict[str, float]:
    """The numbers among `values` (a metrics row, a summary), without `leave_out` and what was not
    measured (None) or is a flag."""
    return {
        k: float(v)
        for k, v in values.items()
        if k not in leave_out and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


@contextmanager
def epoch_logger(cfg: DictConfig, run: RunDir) -> Iterator[EpochCallback | None]:
    """A callback for the trainer's epoch ends (metrics row, model), or None for logger=none."""
    if cfg.name == "none" or not run.writable:
        yield None
        return
    if cfg.name == "mlflow":  # the job's MLflow run is open (MlflowJob); step = epoch
        import mlflow

        yield lambda row, model: mlflow.log_metrics(numbers(row, "epoch"), step=row["epoch"])
        return
    if cfg.name == "wandb":  # the job's W&B run is open (WandbJob); step = epoch
        import wandb

        yield lambda row, model: wandb.log(numbers(row, "epoch"), step=row["epoch"])
        return
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError(
            "logger=tensorboard needs the tensorboard package: pip install 'mnist-cli[tensorboard]' (or drop logger=)"
        ) from None
    writer = SummaryWriter(log_dir=str(run.path / cfg.dir))

    def log_epoch(row: dict[str, Any], model: Any) -> None:
        for key, value in numbers(row, "epoch").items():
            writer.add_scalar(key, value, global_step=row["epoch"])
        writer.flush()

    try:
        yield log_epoch
    finally:
        writer.close()


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


class MlflowJob:
    """With logger=mlflow: the job as one MLflow run, open while the stage runs (the epoch logger
    writes into it) and finished with the summary's final numbers, tags and the run's files. Its id
    goes into the summary (summary.json), where a resumed job finds it and continues that run."""

    def __init__(self, cfg: DictConfig, run: RunDir, summary: dict[str, Any], resumed: bool):
        try:
            import mlflow
        except ImportError:
            raise UserError("logger=mlflow needs MLflow: pip install 'mnist-cli[mlflow]' (or drop logger=)") from None
        self.mlflow, self.cfg, self.run = mlflow, cfg, run
        mlflow.set_tracking_uri(cfg.logger.tracking_uri)
        name = cfg.logger.experiment or cfg.stage.name
        if cfg.logger.artifacts and mlflow.get_experiment_by_name(name) is None:
            mlflow.create_experiment(name, artifact_location=Path(cfg.logger.artifacts).expanduser().resolve().as_uri())
        mlflow.set_experiment(name)
        previous = summary.get("mlflow_run_id") if resumed else None
        active = mlflow.start_run(run_id=previous, run_name=None if previous else f"{cfg.stage.name}/{run.path.name}")
        summary["mlflow_run_id"] = active.info.run_id
        if not previous:  # a resumed run keeps the params it started with
            mlflow.log_params(flat_params(cfg))
        tags = {"stage": cfg.stage.name, "run_dir": str(run.path), "model": str(OmegaConf.select(cfg, "model.name"))}
        mlflow.set_tags({**tags, **({"git_commit": commit} if (commit := git_commit()) else {})})

    def finish(self, summary: dict[str, Any]) -> None:
        """Log the summary's numbers, its status and the run's files, and close the MLflow run."""
        mlflow = self.mlflow
        mlflow.log_metrics(numbers(summary))
        mlflow.set_tags(final_labels(summary))
        for file in run_files(self.run):
            mlflow.log_artifact(str(file))
        if self.cfg.logger.log_checkpoint and self.run.best_ckpt.is_file():
            mlflow.log_artifact(str(self.run.best_ckpt), artifact_path="checkpoints")
        status = {"completed": "FINISHED", "interrupted": "KILLED"}.get(summary.get("status"), "FAILED")
        mlflow.end_run(status)


def has_wandb_key() -> bool:
    """Whether W&B can log in without asking: WANDB_API_KEY, or `wandb login`'s entry in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


class WandbJob:
    """With logger=wandb: the job as one W&B run, written inside the run directory (wandb/) and, with
    an API key configured, uploaded as it goes; without one, offline, for a later `wandb sync`. The
    resolved config is the run's config, each epoch's metrics its history (step = epoch), the
    summary's final numbers its summary, the run's files its files. Its id goes into summary.json,
    where a resumed job finds it and continues that run."""

    def __init__(self, cfg: DictConfig, run: RunDir, summary: dict[str, Any], resumed: bool):
        try:
            import wandb
        except ImportError:
            raise UserError("logger=wandb needs wandb: pip install 'mnist-cli[wandb]' (or drop logger=)") from None
        self.cfg, self.run = cfg, run
        mode = cfg.logger.mode if cfg.logger.mode != "auto" else "online" if has_wandb_key() else "offline"
        previous = summary.get("wandb_run_id") if resumed else None
        self.active = wandb.init(
            project=cfg.logger.project,
            entity=cfg.logger.entity,
            group=cfg.logger.group or (run.path.parent.name if run.path.name.isdigit() else None),  # a sweep's
            name=f"{cfg.stage.name}/{run.path.name}",
            notes=str(run.path),
            tags=[cfg.stage.name, str(OmegaConf.select(cfg, "model.name"))],
            config=None if previous else OmegaConf.to_container(cfg, resolve=True),
            dir=str(run.path),
            mode=mode,
            id=previous,
            resume="allow" if previous else None,
            settings=wandb.Settings(console="off", silent=True, x_save_requirements=False),
        )
        summary.update(wandb_run_id=self.active.id, wandb_mode=mode)
        if commit := git_commit():
            self.active.summary["git_commit"] = commit

    def finish(self, summary: dict[str, Any]) -> None:
        """Put the summary's numbers and status in the W&B run's summary, save the run's files, finish it."""
        import wandb

        self.active.summary.update({**numbers(summary), **final_labels(summary)})
        best = [self.run.best_ckpt] if self.cfg.logger.log_checkpoint and self.run.best_ckpt.is_file() else []
        for file in [*run_files(self.run), *best]:
            wandb.save(str(file), base_path=str(self.run.path), policy="now")
        self.active.finish(exit_code=0 if summary.get("status") == "completed" else 1)
        if self.active.settings.mode == "offline":
            folder = Path(self.active.dir).parent
            logging.getLogger(__name__).info(
                "W&B run %s kept offline: upload it with `wandb sync %s`", self.active.id, folder
            )


TRACKERS = {"mlflow": MlflowJob, "wandb": WandbJob}


def start_tracking(cfg: DictConfig, run: RunDir, summary: dict[str, Any], resumed: bool) -> MlflowJob | WandbJob | None:
    """The job's run in the experiment tracker logger= names, or None (no tracker; or another rank writes)."""
    name = OmegaConf.select(cfg, "logger.name")
    return TRACKERS[name](cfg, run, summary, resumed) if name in TRACKERS and run.writable else None
