"""Sweeps (-m), the Optuna search, launchers, experiment presets and `mnist report`, end to end on
tiny data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from mnist_cli.config.compose import config_dir
from mnist_cli.report import runs as report

from conftest import FAST, mnist, run_dirs, summary, write_dataset

pytestmark = pytest.mark.slow  # sweeps and runs of the command, end to end

TINY_CNN = ["trainer.batch_size=32", "model.channels=[8,16]"]


def jobs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: int(p.name))


def assert_png(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 200 and image.height > 200
        image.load()  # decodes the whole file


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> tuple[Path, str]:
    """A 4-job sweep (2 optimizers x 2 widths) with TensorBoard logging, then `mnist report` on it."""
    cwd = tmp_path_factory.mktemp("sweep")
    result = mnist(
        "pretrain",
        "-m",
        f"dataset.root={tiny_data}",
        *TINY_CNN,
        "trainer.epochs=2",
        "trainer.min_steps=0",
        "logger=tensorboard",
        "optimizer=adam,sgd",
        "model.hidden=16,32",
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr
    reported = mnist("report", cwd=cwd)  # no argument: the latest sweep
    assert reported.returncode == 0, reported.stderr
    [sweep_dir] = run_dirs(cwd, "multirun")
    return sweep_dir, reported.stdout


def test_each_job_of_a_sweep_has_its_own_run_dir(sweep: tuple[Path, str]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sweep_dir, _ = sweep
    runs = jobs(sweep_dir)
    assert [r.name for r in runs] == ["0", "1", "2", "3"]
    combos = {(o["optimizer"], o["model.hidden"]) for o in (report.load_run(r, sweep_dir).overrides for r in runs)}
    assert combos == {("adam", "16"), ("adam", "32"), ("sgd", "16"), ("sgd", "32")}
    for run in runs:
        assert summary(run)["status"] == "completed" and summary(run)["metric"] == "best_val_acc"
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        with open(run / "metrics.csv") as f:
            table = list(csv.DictReader(f))
        assert [float(r["val_acc"]) for r in table] == [r["val_acc"] for r in rows] and len(rows) == 2
        events = EventAccumulator(str(run / "tensorboard"))
        events.Reload()
        assert [e.value for e in events.Scalars("val_acc")] == pytest.approx([r["val_acc"] for r in rows])
        assert [e.step for e in events.Scalars("train_loss")] == [1, 2]


def test_report_ranks_the_sweep_in_a_table_a_csv_and_plots(sweep: tuple[Path, str]) -> None:
    sweep_dir, stdout = sweep
    with open(sweep_dir / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    # Ranked by the metric, best first; every figure is the run's own summary's.
    assert [float(r["best_val_acc"]) for r in rows] == sorted((float(r["best_val_acc"]) for r in rows), reverse=True)
    for rank, row in enumerate(rows, 1):
        run = summary(Path(row["run_dir"]))
        assert row["rank"] == str(rank) and row["status"] == "completed"
        assert float(row["best_val_acc"]) == run["best_val_acc"] and float(row["test_acc"]) == run["test_acc"]
        assert int(row["epochs"]) == run["epochs_run"] == 2
        assert float(row["wall_time_s"]) == run["wall_time_s"]
        assert (
            f"optimizer={row['optimizer']}" in run["overrides"]
            and f"model.hidden={row['model.hidden']}" in run["overrides"]
        )
        assert "dataset.root" not in row  # the same in every job: not a column
        assert row["data"] == "mnist (10: 0, 1, 2, 3, ...)"  # the data set and its class names
        # The table shows the same run on one line: rank, run, data, the overrides, val and test accuracy, status.
        [line] = [line for line in stdout.splitlines() if line.startswith(f"│ {rank:>4} │ {row['run']} ")]
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        assert cells == [
            str(rank),
            row["run"],
            row["data"],
            row["optimizer"],
            row["model.hidden"],
            f"{run['best_val_acc']:.4f}",
            f"{run['test_acc']:.4f}",
            "2",
            f"{run['wall_time_s']:.1f}",
            "completed",
        ]
    for name in ("learning_curves.png", "metric_vs_params.png"):
        assert_png(sweep_dir / name)
        assert f"wrote outputs/multirun/{sweep_dir.name}/{name}" in stdout


def test_a_failing_job_is_recorded_and_the_sweep_goes_on(
    tmp_path: Path, tiny_data: Path, capsys: pytest.CaptureFixture
) -> None:
    """Through launcher=submitit_local, which runs each job in its own process as a cluster would:
    the jobs share the sweep directory, a bad value fails its job alone, and mnist exits 1 naming it."""
    result = mnist(
        "pretrain",
        "-m",
        "launcher=submitit_local",
        "hydra.launcher.cpus_per_task=1",
        f"dataset.root={tiny_data}",
        *FAST,
        "trainer.epochs=1",
        "trainer.min_steps=0",
        "optimizer.lr=-1,0.01",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "1 job(s) failed: job 0 (" in result.stderr and "optimizer.lr=-1 is not valid" in result.stderr
    [sweep_dir] = run_dirs(tmp_path, "multirun")
    assert [summary(run)["status"] for run in jobs(sweep_dir)] == ["failed", "completed"]
    assert (sweep_dir / ".submitit").is_dir()

    report.main([str(sweep_dir)])
    out = capsys.readouterr().out
    with open(sweep_dir / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["run"], r["status"]) for r in rows] == [("1", "completed"), ("0", "failed")]  # failed: last
    assert "optimizer.lr=-1 is not valid" in rows[1]["error"] and rows[1]["best_val_acc"] == ""
    assert "failed" in out and "0: optimizer.lr=-1 is not valid" in out


def test_optuna_search_runs_and_continues_from_its_stored_study(tmp_path: Path, tiny_data: Path) -> None:
    import optuna

    # model.channels given on the command line is held fixed: the search covers the other three
    search = ["-m", "hparams_search=optuna", f"dataset.root={tiny_data}", "trainer.epochs=1", *FAST[2:]]
    first = mnist("pretrain", *search, "hydra.sweeper.n_trials=4", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    again = mnist("pretrain", *search, "hydra.sweeper.n_trials=2", cwd=tmp_path)  # e.g. after a crash
    assert again.returncode == 0, again.stderr

    study = optuna.load_study(study_name="pretrain-cnn", storage=f"sqlite:///{tmp_path / 'outputs' / 'optuna.db'}")
    trials = study.trials
    assert len(trials) == 6 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert set(trials[0].params) == {"optimizer.lr", "optimizer.weight_decay", "trainer.batch_size"}
    sweeps = run_dirs(tmp_path, "multirun")
    runs = [run for sweep_dir in sweeps for run in jobs(sweep_dir)]
    assert [len(jobs(s)) for s in sweeps] == [4, 2]
    # Each trial's value is its run's metric, and its parameters are the run's overrides.
    for trial, run in zip(trials, runs):
        assert trial.value == summary(run)["best_val_acc"]
        assert f"optimizer.lr={trial.params['optimizer.lr']}" in summary(run)["overrides"]
        assert 1e-4 <= trial.params["optimizer.lr"] <= 3e-2


def test_every_experiment_preset_runs_a_tiny_step(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", n_train=64, n_test=32)
    result = mnist(
        "pretrain",
        "-m",
        "experiment=glob(*)",
        f"dataset.root={data}",
        "trainer.precision=bf16",  # every model and objective once in bf16, on any CPU
        "trainer.epochs=1",
        "trainer.min_steps=0",
        "trainer.batch_size=32",
        "trainer.eval_batch_size=64",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    presets = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))
    [sweep_dir] = run_dirs(tmp_path, "multirun")
    runs = [summary(run) for run in jobs(sweep_dir)]
    assert sorted(o for run in runs for o in run["overrides"] if o.startswith("experiment=")) == [
        f"experiment={p}" for p in presets
    ]
    assert all(run["status"] == "completed" and run["epochs_run"] == 1 for run in runs)


def test_report_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from mnist_cli.cli import main

    monkeypatch.chdir(tmp_path)
    for args, message in (
        (["report"], "no sweep under outputs/multirun"),
        (["report", "nowhere"], "nowhere: no such folder"),
        (["report", "."], "no runs (folders with a summary.json) under ."),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
