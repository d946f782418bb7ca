"""Faults: kills at random moments and signals (each resumed and compared bit for bit with a run
that was never stopped), NaN, full disks. Run alone, with test_bad_input.py, as `pytest -m faults`."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from mnist_cli.errors import UserError
from mnist_cli.run_dir import write_text
from mnist_cli.training.checkpoint import load_checkpoint, save_checkpoint

from conftest import BAD_INPUTS, FAST, metrics, mnist, run_dirs, start_mnist, summary, write_dataset

pytestmark = pytest.mark.faults

# A run of three epochs of 93 steps that checkpoints every 10 steps, with deterministic kernels.
LONG = [*FAST, "trainer.epochs=3", "trainer.checkpoint_every_steps=10", "trainer.deterministic=true"]


def wait_for(path_glob: str, cwd: Path, timeout: float = 120) -> list[Path]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if found := sorted(cwd.glob(path_glob)):
            return found
        time.sleep(0.02)
    raise AssertionError(f"nothing matched {path_glob} within {timeout} s")


def assert_same_run(a: Path, b: Path) -> None:
    """Same metrics, same test result, bit-identical best and last weights."""
    assert metrics(a) == metrics(b)
    sa, sb = summary(a), summary(b)
    assert (sa["test_acc"], sa["test_loss"], sa["best_epoch"]) == (sb["test_acc"], sb["test_loss"], sb["best_epoch"])
    for name in ("best.ckpt", "last.ckpt"):
        wa, wb = (load_checkpoint(run / "checkpoints" / name)["model"] for run in (a, b))
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("fault-data"), n_train=1600, n_test=100)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Path:
    cwd = tmp_path_factory.mktemp("uninterrupted")
    result = mnist("pretrain", f"dataset.root={data}", *LONG, cwd=cwd)
    assert result.returncode == 0, result.stderr
    [run] = run_dirs(cwd, "pretrain")
    return run


def test_kill_9_at_random_moments_then_resume_ends_bit_identical(
    tmp_path: Path, data: Path, uninterrupted: Path
) -> None:
    seed = int(os.environ.get("MNIST_CLI_FAULT_SEED", "0"))
    rng = random.Random(seed)
    span = summary(uninterrupted)["train_time_s"]  # how long training takes on this machine
    proc = start_mnist("pretrain", f"dataset.root={data}", *LONG, cwd=tmp_path)
    [last] = wait_for("outputs/pretrain/*/checkpoints/last.ckpt", tmp_path)
    run = last.parent.parent
    kills: list[str] = []
    while len(kills) < 3:
        delay = rng.uniform(0, 0.4) * span  # into training: at most 0.8 of a run in the first two kills
        try:
            proc.wait(timeout=delay)  # it finished before this kill
            break
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")  # always a whole checkpoint
        where = ckpt["in_progress"]["step"] if ckpt["in_progress"] else "end"
        kills.append(f"{delay:.2f}s (saved: epoch {ckpt['epoch'] + (ckpt['in_progress'] is not None)} step {where})")
        status = summary(run)["status"]
        assert status in ("running", "completed")  # completed: killed while exiting
        if status == "completed":
            break
        resumes = (run / "run.log").read_text().count("resuming after")
        proc = start_mnist("pretrain", f"resume={run}", cwd=tmp_path)
        deadline = time.time() + 120
        while (run / "run.log").read_text().count("resuming after") == resumes and time.time() < deadline:
            time.sleep(0.02)  # the next kill lands in training, not in start-up
    print(f"seed {seed}: killed after {', '.join(kills)}")
    assert len(kills) >= 2, "the run outpaced the kills"

    _, stderr = proc.communicate(timeout=300)  # the last resume runs to the end
    assert summary(run)["status"] == "completed", stderr
    assert_same_run(uninterrupted, run)
    assert not list(run.rglob(".*.tmp*"))  # no temporary file left behind in a directory that counts


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_checkpoints_mid_epoch_and_resume_ends_bit_identical(
    tmp_path: Path, data: Path, uninterrupted: Path, signum: int, code: int
) -> None:
    proc = start_mnist("pretrain", f"dataset.root={data}", *LONG, cwd=tmp_path)
    [last] = wait_for("outputs/pretrain/*/checkpoints/last.ckpt", tmp_path)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    run = last.parent.parent
    s = summary(run)
    assert s["status"] == "interrupted" and s["signal"] == signal.Signals(signum).name
    ckpt = load_checkpoint(last)
    assert (
        ckpt["in_progress"] is not None and ckpt["in_progress"]["step"] > 10
    )  # saved after the signal, not at step 10

    if signum == signal.SIGTERM:  # the checkpoint is the same whichever signal asked for it
        # as people resume: the original command with resume= added (and how to run it changed)
        resumed = mnist(
            "pretrain", f"dataset.root={data}", *LONG, "trainer.num_threads=2", f"resume={run}", cwd=tmp_path
        )
        assert resumed.returncode == 0, resumed.stderr
        assert "resuming after step" in resumed.stdout
        assert_same_run(uninterrupted, run)


def test_a_second_ctrl_c_stops_at_once_and_leaves_whole_files(tmp_path: Path, data: Path) -> None:
    proc = start_mnist("pretrain", f"dataset.root={data}", *FAST, "trainer.epochs=50", cwd=tmp_path)
    [last] = wait_for("outputs/pretrain/*/checkpoints/last.ckpt", tmp_path)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in stderr
    run = last.parent.parent
    load_checkpoint(last)  # whole
    json.loads((run / "summary.json").read_text())
    assert (run / "metrics.jsonl").read_text().endswith("\n")


def test_nan_loss_stops_naming_epoch_step_and_knob_and_keeps_the_good_checkpoint(tmp_path: Path, data: Path) -> None:
    # The learning rate grows 1e6-fold after the first epoch, so the loss blows up in the second.
    result = mnist(
        "pretrain",
        f"dataset.root={data}",
        *FAST,
        "trainer.epochs=3",
        "scheduler=step",
        "scheduler.step_epochs=1",
        "scheduler.gamma=1e6",
        "optimizer=sgd",
        cwd=tmp_path,
    )
    BAD_INPUTS.append(("learning rate that blows up", result.stderr.strip()))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "in epoch 2 by step" in result.stderr and "optimizer.lr" in result.stderr
    [run] = run_dirs(tmp_path, "pretrain")
    assert summary(run)["status"] == "failed"
    last = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 1 and all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())


def test_a_full_disk_keeps_the_previous_file_and_says_what_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "summary.json"
    write_text(target, "good\n")
    ckpt = tmp_path / "last.ckpt"
    save_checkpoint(ckpt, {"epoch": 1})

    def full(self: Path, data: object) -> int:
        self.open("wb").write(b"par")  # a partial write, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", full)
    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(UserError, match="could not write .*summary.json .No space left on device.*unchanged"):
        write_text(target, "new\n")
    with pytest.raises(UserError, match="could not write .*last.ckpt"):
        save_checkpoint(ckpt, {"epoch": 2})
    monkeypatch.undo()
    assert target.read_text() == "good\n" and load_checkpoint(ckpt)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "summary.json"]  # no temporary files
