"""Data-parallel training with torchrun: two CPU processes (gloo) on tiny data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FAST, mnist, run_dirs, write_dataset
from mnist_cli.checkpoint import load_checkpoint

ARGS = [*FAST, "trainer.batch_size=32"]  # the global batch: 16 images per process


def torchrun(*args: str, cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "MNIST_CLI_DATA"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "mnist_cli", *args]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return out


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("ddp-data"), n_train=1000, n_test=200)


def test_two_processes_match_one_with_the_same_global_batch(tmp_path: Path, data: Path) -> None:
    single = mnist("pretrain", f"dataset.root={data}", *ARGS, cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    [one] = run_dirs(tmp_path, "pretrain")
    (tmp_path / "ddp").mkdir()
    finish(torchrun("pretrain", f"dataset.root={data}", *ARGS, cwd=tmp_path / "ddp"))

    [ddp] = run_dirs(tmp_path / "ddp", "pretrain")  # the other rank made no run directory
    assert summary(ddp)["status"] == "completed" and summary(ddp)["processes"] == 2
    log = (ddp / "run.log").read_text()
    assert "x 2 processes" in log and log.count("epoch 2/2") == 1  # and logged nothing there
    for a, b in zip(rows(one), rows(ddp), strict=True):
        assert abs(a["train_loss"] - b["train_loss"]) <= 0.05 * a["train_loss"]  # per-process BatchNorm and dropout differ
        assert abs(a["val_acc"] - b["val_acc"]) <= 0.02
    assert abs(summary(one)["test_acc"] - summary(ddp)["test_acc"]) <= 0.02


def test_sigterm_then_resume_under_torchrun(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", n_train=2000, n_test=100)
    proc = torchrun("pretrain", f"dataset.root={data}", *ARGS, cwd=tmp_path)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob("outputs/pretrain/*/checkpoints/last.ckpt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # torchrun passes it on to both processes
    proc.communicate(timeout=60)
    [run] = run_dirs(tmp_path, "pretrain")
    assert summary(run)["status"] == "interrupted"
    saved = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert len(saved["rng"]["torch"]) == 2  # each process's random state, to resume it

    out = finish(torchrun("pretrain", f"resume={run}", cwd=tmp_path))
    assert "resuming after" in out
    assert summary(run)["status"] == "completed" and [r["epoch"] for r in rows(run)] == [1, 2]
    assert run_dirs(tmp_path, "pretrain") == [run]
