"""Data-parallel training with torchrun: two CPU processes (gloo) on tiny data."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mnist_cli.training.checkpoint import load_checkpoint

from conftest import FAST, TINY_VIT, metrics, mnist, run_dirs, summary, write_dataset

pytestmark = pytest.mark.slow  # torchrun runs of the command, end to end

# 32 images per optimizer step: 2 accumulated micro-batches of 16, 8 images of each per process
# (the gradients are averaged over the processes on the second only: DDP's no_sync on the first)
ARGS = [*FAST, "trainer.batch_size=16", "trainer.accumulate_steps=2"]


def torchrun(*args: str, cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "MNIST_CLI_DATA"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "mnist_cli",
        *args,
    ]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return out


def test_two_processes_stopped_and_resumed_match_one_with_the_same_global_batch(tmp_path: Path) -> None:
    """torchrun with 2 processes, SIGTERMed after its first checkpoint and resumed under torchrun,
    ends with the curves of one process on the same global batch, both accumulating gradients."""
    data = write_dataset(tmp_path / "data", n_train=2000, n_test=200)
    single = mnist("pretrain", f"dataset.root={data}", *ARGS, cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    [one] = run_dirs(tmp_path, "pretrain")

    cwd = tmp_path / "ddp"
    cwd.mkdir()
    proc = torchrun("pretrain", f"dataset.root={data}", *ARGS, cwd=cwd)
    deadline = time.time() + 120
    while time.time() < deadline and not list(cwd.glob("outputs/pretrain/*/checkpoints/last.ckpt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # torchrun passes it on to both processes
    proc.communicate(timeout=60)
    [ddp] = run_dirs(cwd, "pretrain")  # the other rank made no run directory
    assert summary(ddp)["status"] == "interrupted"
    saved = load_checkpoint(ddp / "checkpoints" / "last.ckpt")
    assert len(saved["rng"]["torch"]) == 2  # each process's random state, to resume it

    out = finish(torchrun("pretrain", f"resume={ddp}", cwd=cwd))
    assert "resuming after" in out and run_dirs(cwd, "pretrain") == [ddp]
    assert summary(ddp)["status"] == "completed" and summary(ddp)["processes"] == 2
    assert summary(ddp)["effective_batch_size"] == summary(one)["effective_batch_size"] == 32
    log = (ddp / "run.log").read_text()
    assert "x 2 processes" in log and log.count("epoch 2/2 ") == 1  # and the other rank logged nothing there
    for a, b in zip(metrics(one), metrics(ddp), strict=True):
        assert (
            abs(a["train_loss"] - b["train_loss"]) <= 0.05 * a["train_loss"]
        )  # per-process BatchNorm and dropout differ
        assert abs(a["val_acc"] - b["val_acc"]) <= 0.02
    assert abs(summary(one)["test_acc"] - summary(ddp)["test_acc"]) <= 0.02


def test_two_nodes_with_a_c10d_rendezvous_train_the_weights_of_one_process(tmp_path: Path) -> None:
    """Two torchrun "nodes" of one process each, meeting at a c10d rendezvous on 127.0.0.1, end with
    the weights of one process with the same global batch: a ViT (no BatchNorm, no dropout), no
    augmentation, float32, so the averaged gradients are the one process's (up to float rounding)."""
    data = write_dataset(tmp_path / "data", n_train=600, n_test=100)
    args = [
        "pretrain",
        f"dataset.root={data}",
        *TINY_VIT,
        "trainer.epochs=2",
        "trainer.batch_size=16",
        "trainer.min_steps=0",
        "trainer.precision=fp32",
        "dataset.augment.enabled=false",
        "calibrate=false",
        "optimizer=sgd",  # a step in proportion to the gradient: Adam would magnify float rounding in tiny ones
    ]
    single = mnist(*args, cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    [one] = run_dirs(tmp_path, "pretrain")

    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cwd = tmp_path / "nodes"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "MNIST_CLI_DATA"}
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes=2",
                "--nproc-per-node=1",
                "--rdzv-backend=c10d",
                f"--rdzv-endpoint=127.0.0.1:{port}",
                "--rdzv-id=mnist-test",
                f"--rdzv-conf=is_host={str(host).lower()}",  # which "node" keeps the rendezvous store
                "--local-addr=127.0.0.1",
                "-m",
                "mnist_cli",
                *args,
            ],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for host in (True, False)
    ]
    for node in nodes:
        finish(node)
    [two] = run_dirs(cwd, "pretrain")  # rank 0's; the other rank made none
    assert summary(two)["processes"] == 2 and summary(two)["effective_batch_size"] == 16
    a = load_checkpoint(one / "checkpoints" / "best.ckpt")["model"]
    b = load_checkpoint(two / "checkpoints" / "best.ckpt")["model"]
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-5), name
