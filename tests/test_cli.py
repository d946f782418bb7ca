"""The `mnist` command end to end, in subprocesses, on tiny generated data."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FAST, mnist, run_dirs, write_dataset


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def test_pretrain_finetune_eval(tmp_path: Path, tiny_data: Path) -> None:
    pretrain = mnist("pretrain", f"dataset.root={tiny_data}", *FAST, "trainer.target_accuracy=0.5", cwd=tmp_path)
    assert pretrain.returncode == 0, pretrain.stderr
    [run] = run_dirs(tmp_path, "pretrain")
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "run.log", "checkpoints/best.ckpt", "checkpoints/last.ckpt", ".hydra/config.yaml"):
        assert (run / name).is_file(), name
    s = summary(run)
    assert s["status"] == "completed" and s["epochs_run"] == 2 and s["test_acc"] > 0.9
    assert s["versions"]["torch"] and s["device"] == "cpu" and s["wall_time_s"] > 0
    assert 0 < s["time_to_target_s"] <= s["train_time_s"] + 5 and s["images_per_s"] > 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all(r["images_per_s"] > 0 and r["epoch_time_s"] > 0 for r in rows)

    # The model and the data set come from the checkpoint: no model= or dataset.root= needed.
    finetune = mnist("finetune", f"ckpt={run}", "trainer.epochs=1", "finetune.freeze=backbone", cwd=tmp_path)
    assert finetune.returncode == 0, finetune.stderr
    [ft_run] = run_dirs(tmp_path, "finetune")
    ft = summary(ft_run)
    assert ft["status"] == "completed" and ft["source_checkpoint"] == str(run / "checkpoints" / "best.ckpt")
    assert "channels:\n  - 8\n  - 16" in (ft_run / "config.yaml").read_text()

    evaluate = mnist("eval", f"ckpt={ft_run}", cwd=tmp_path)
    assert evaluate.returncode == 0, evaluate.stderr
    [eval_run] = run_dirs(tmp_path, "eval")
    report = json.loads((eval_run / "eval.json").read_text())
    assert report["test_acc"] == ft["test_acc"]
    assert len(report["per_class"]) == 10 and sum(map(sum, report["confusion_matrix"])) == 128
    assert "Confusion matrix" in evaluate.stdout and "test accuracy" in evaluate.stdout

    latest = mnist("eval", "ckpt=latest", cwd=tmp_path)
    assert latest.returncode == 0, latest.stderr
    newest_eval = run_dirs(tmp_path, "eval")[-1]
    assert (tmp_path / summary(newest_eval)["checkpoint"]).resolve() == ft_run / "checkpoints" / "best.ckpt"


def test_resume_after_kill_ends_where_an_uninterrupted_run_ends(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", n_train=3000, n_test=100)
    args = [f"dataset.root={data}", *FAST, "trainer.epochs=4"]
    assert mnist("pretrain", *args, cwd=tmp_path).returncode == 0
    [whole] = run_dirs(tmp_path, "pretrain")

    proc = subprocess.Popen([sys.executable, "-m", "mnist_cli", "pretrain", *args], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "outputs" / "pretrain").glob("*/checkpoints/last.ckpt"))[1:]:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    [cut] = [d for d in run_dirs(tmp_path, "pretrain") if d != whole]
    assert summary(cut)["status"] == "running"  # killed before it could finish

    resumed = mnist("pretrain", f"resume={cut}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch" in resumed.stdout
    a, b = summary(whole), summary(cut)
    assert b["status"] == "completed" and b["resumed_at"]
    assert (a["test_acc"], a["test_loss"], a["best_val_acc"]) == (b["test_acc"], b["test_loss"], b["best_val_acc"])
    assert (whole / "metrics.jsonl").read_text().count("val_loss") == 4
    val_losses = lambda d: [json.loads(line)["val_loss"] for line in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert val_losses(whole) == val_losses(cut)

    again = mnist("pretrain", f"resume={cut}", cwd=tmp_path)
    assert again.returncode == 2 and "already finished" in again.stderr
    assert summary(cut)["status"] == "completed"  # the refused resume left the record alone


def test_ctrl_c_marks_the_run_interrupted_and_keeps_its_checkpoint(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", n_train=3000, n_test=100)
    proc = subprocess.Popen([sys.executable, "-m", "mnist_cli", "pretrain", f"dataset.root={data}", *FAST, "trainer.epochs=50"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "outputs").glob("pretrain/*/checkpoints/last.ckpt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in stderr and "Traceback" not in stderr
    [run] = run_dirs(tmp_path, "pretrain")
    assert summary(run)["status"] == "interrupted" and (run / "checkpoints" / "last.ckpt").is_file()


def test_sweep_runs_every_job_and_records_a_failing_one(tmp_path: Path, tiny_data: Path) -> None:
    result = mnist("pretrain", "-m", f"dataset.root={tiny_data}", *FAST, "trainer.epochs=1",
                   "optimizer=adam,sgd", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [sweep] = run_dirs(tmp_path, "multirun")
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [j.name for j in jobs] == ["0", "1"]
    assert [summary(j)["status"] for j in jobs] == ["completed", "completed"]
    assert "optimizer=sgd" in summary(jobs[1])["overrides"]

    failing = mnist("pretrain", "-m", f"dataset.root={tiny_data}", *FAST, "trainer.epochs=1",
                    "optimizer.lr=-1,0.01", cwd=tmp_path)
    assert failing.returncode == 1 and "1 job(s) failed" in failing.stderr
    newest = run_dirs(tmp_path, "multirun")[-1]
    assert [summary(newest / n)["status"] for n in ("0", "1")] == ["failed", "completed"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train"], "unknown stage 'train'"),
        (["pretrain", "model=vgg"], "unknown model 'vgg': choose one of cnn"),
        (["pretrain", "optimizer.lr=-1"], "optimizer.lr=-1 is not valid"),
        (["pretrain", "trainer.batch_size=0"], "trainer.batch_size=0 is not valid"),
        (["pretrain", "dataset.val_size=2.0"], "dataset.val_size=2.0 is not valid"),
        (["pretrain", "dataset.root=nowhere", "dataset.download=false"], "not found in nowhere or nowhere/MNIST/raw"),
        (["eval"], "eval needs a checkpoint"),
        (["eval", "ckpt=missing.ckpt"], "checkpoint missing.ckpt does not exist"),
        (["finetune", "ckpt=latest"], "no checkpoints under outputs/"),
        (["pretrain", "resume=nowhere"], "not a run directory with checkpoints/last.ckpt"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = mnist(*args, cwd=tmp_path)
    print(f"{' '.join(args)!r} -> {result.stderr.strip()}")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_config_errors_do_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom mnist_cli.cli import main\n"
        "try:\n    main(['pretrain', 'optimizer.lr=-1'])\nexcept SystemExit as e:\n    assert e.code == 2, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "optimizer.lr=-1 is not valid" in result.stderr


def test_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.ckpt").write_text("hello")
    result = mnist("eval", "ckpt=notes.ckpt", cwd=tmp_path)
    assert result.returncode == 2 and "not a readable checkpoint" in result.stderr


def test_hydra_flags_keep_working(tmp_path: Path) -> None:
    cfg = mnist("pretrain", "optimizer=sgd", "--cfg", "job", cwd=tmp_path)
    assert cfg.returncode == 0 and "name: sgd" in cfg.stdout and "momentum: 0.9" in cfg.stdout
    help_text = mnist("finetune", "--help", cwd=tmp_path)
    assert help_text.returncode == 0 and "freeze: none" in help_text.stdout and "optimizer: adadelta, adam, adamw, sgd" in help_text.stdout
    assert not (tmp_path / "outputs").exists()  # neither ran a job
    top = mnist("--help", cwd=tmp_path)
    assert top.returncode == 0 and "Stages:" in top.stdout
