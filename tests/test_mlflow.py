"""logger=mlflow: each job one MLflow run, read back with MLflow's own client and held against the
run directory's files; a sweep's jobs, and a resumed run that continues its MLflow run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import FAST, interrupted_after_an_epoch, mnist, run_dirs, summary, write_dataset

mlflow = pytest.importorskip("mlflow")
pytestmark = pytest.mark.slow


def client(cwd: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{cwd / 'outputs' / 'mlflow.db'}")


def runs_of(cwd: Path, experiment: str = "pretrain") -> list:
    store = client(cwd)
    found = store.get_experiment_by_name(experiment)
    return store.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"])


def test_a_run_is_tracked_with_its_config_epochs_results_and_files(tmp_path: Path, tiny_data: Path) -> None:
    done = mnist("pretrain", f"dataset.root={tiny_data}", *FAST, "logger=mlflow", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [run] = run_dirs(tmp_path, "pretrain")
    [tracked] = runs_of(tmp_path)
    recorded = summary(run)
    assert tracked.info.run_id == recorded["mlflow_run_id"] and tracked.info.status == "FINISHED"
    config = OmegaConf.load(run / "config.yaml")
    params = tracked.data.params
    assert params["trainer.epochs"] == str(config.trainer.epochs) and params["model.channels"] == "[8, 16]"
    assert params["dataset.root"] == str(tiny_data) and params["stage.name"] == "pretrain"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for name in ("val_acc", "train_loss", "lr"):
        history = client(tmp_path).get_metric_history(tracked.info.run_id, name)
        assert [(h.step, h.value) for h in history] == [(r["epoch"], r[name]) for r in rows]
    assert tracked.data.metrics["test_acc"] == recorded["test_acc"]
    assert tracked.data.metrics["temperature"] == recorded["temperature"]
    assert tracked.data.tags["stage"] == "pretrain" and tracked.data.tags["precision"] == recorded["precision"]
    files = {a.path for a in client(tmp_path).list_artifacts(tracked.info.run_id)}
    assert {"config.yaml", "summary.json", "metrics.csv"} <= files
    assert (tmp_path / "outputs" / "mlflow-artifacts").is_dir()  # beside the runs, not in the working folder

    done = mnist("eval", "ckpt=latest", "logger=mlflow", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [evaluated] = runs_of(tmp_path, "eval")
    eval_files = {a.path for a in client(tmp_path).list_artifacts(evaluated.info.run_id)}
    assert {"eval.json", "confusion_matrix.png", "embedding.png"} <= eval_files


def test_a_sweep_of_three_jobs_is_three_runs_in_one_experiment(tmp_path: Path, tiny_data: Path) -> None:
    done = mnist(
        "pretrain", "-m", f"dataset.root={tiny_data}", *FAST, "logger=mlflow", "trainer.seed=0,1,2", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    tracked = runs_of(tmp_path)
    assert len(tracked) == 3 and [r.data.params["trainer.seed"] for r in tracked] == ["0", "1", "2"]
    assert all(r.info.status == "FINISHED" for r in tracked)


def test_a_resumed_run_continues_its_mlflow_run_without_repeating_an_epoch(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", n_train=3100, n_test=100)
    args = ["pretrain", f"dataset.root={data}", *FAST, "trainer.epochs=3", "trainer.checkpoint_every_steps=10"]
    run = interrupted_after_an_epoch(*args, "logger=mlflow", cwd=tmp_path)
    [stopped] = runs_of(tmp_path)
    assert stopped.info.status == "KILLED" and summary(run)["mlflow_run_id"] == stopped.info.run_id

    resumed = mnist(*args, "logger=mlflow", f"resume={run}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    [tracked] = runs_of(tmp_path)  # the same run, continued
    assert tracked.info.run_id == stopped.info.run_id and tracked.info.status == "FINISHED"
    steps = [h.step for h in client(tmp_path).get_metric_history(tracked.info.run_id, "val_acc")]
    assert steps == [1, 2, 3]
