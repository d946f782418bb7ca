"""logger=mlflow: the job as one MLflow run, open while the stage runs and finished with the summary's
final numbers, tags and the run's files. Its id goes into the summary (summary.json), where a
resumed job finds it and continues that run; conf/logger/mlflow.yaml says what each argument means."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_cli.errors import UserError
from mnist_cli.loggers.base import Tracker, final_labels, flat_params, git_commit, numbers, run_files
from mnist_cli.run_dir import RunDir


class MLflow(Tracker):
    def __init__(
        self,
        name: str,
        tracking_uri: str,
        experiment: str | None,
        artifacts: str | None,
        log_checkpoint: bool,
        config: DictConfig,
        run: RunDir,
        summary: dict[str, Any],
        resumed: bool,
    ):
        super().__init__(name, config, run, summary, resumed)
        try:
            import mlflow
        except ImportError:
            raise UserError("logger=mlflow needs MLflow: pip install 'mnist-cli[mlflow]' (or drop logger=)") from None
        self.mlflow, self.log_checkpoint = mlflow, log_checkpoint
        stage = config.stage.name
        mlflow.set_tracking_uri(tracking_uri)
        experiment = experiment or stage
        if artifacts and mlflow.get_experiment_by_name(experiment) is None:
            mlflow.create_experiment(experiment, artifact_location=Path(artifacts).expanduser().resolve().as_uri())
        mlflow.set_experiment(experiment)
        previous = summary.get("mlflow_run_id") if resumed else None
        active = mlflow.start_run(run_id=previous, run_name=None if previous else f"{stage}/{run.path.name}")
        summary["mlflow_run_id"] = active.info.run_id
        tags = {"stage": stage, "run_dir": str(run.path)}
        mlflow.set_tags({**tags, **({"git_commit": commit} if (commit := git_commit()) else {})})

    def settled(self, config: DictConfig) -> None:
        """The settled config as params (a resumed run keeps those it started with), its model as a tag."""
        if not self.resumed:
            self.mlflow.log_params(flat_params(config))
        self.mlflow.set_tag("model", str(OmegaConf.select(config, "model.name")))

    def log_epoch(self, row: dict[str, Any]) -> None:
        self.mlflow.log_metrics(numbers(row, "epoch"), step=row["epoch"])

    def finish(self, summary: dict[str, Any]) -> None:
        """Log the summary's numbers, its status and the run's files, and close the MLflow run."""
        mlflow = self.mlflow
        mlflow.log_metrics(numbers(summary))
        mlflow.set_tags(final_labels(summary))
        for file in run_files(self.run):
            mlflow.log_artifact(str(file))
        if self.log_checkpoint and self.run.best_ckpt.is_file():
            mlflow.log_artifact(str(self.run.best_ckpt), artifact_path="checkpoints")
        status = {"completed": "FINISHED", "interrupted": "KILLED"}.get(summary.get("status"), "FAILED")
        mlflow.end_run(status)
