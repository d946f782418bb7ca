"""Faults and bad input: kills at random moments, signals, NaN, full disks, and every kind of bad
command line, data file and checkpoint. Run alone with `pytest -m faults`; the bad inputs and
their messages are listed at the end of the test output."""

from __future__ import annotations

import errno
import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from mnist_cli.errors import UserError
from mnist_cli.run_dir import write_text
from mnist_cli.training.checkpoint import load_checkpoint, save_checkpoint

from conftest import BAD_INPUTS, FAST, mnist, run_dirs, write_dataset

pytestmark = pytest.mark.faults

# A run of three epochs of 93 steps that checkpoints every 10 steps, with deterministic kernels.
LONG = [*FAST, "trainer.epochs=3", "trainer.checkpoint_every_steps=10", "trainer.deterministic=true"]


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    timing = ("epoch_time_s", "val_time_s", "images_per_s", "elapsed_s")
    return [{k: v for k, v in row.items() if k not in timing} for row in rows]


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "MNIST_CLI_DATA"}
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


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
    return write_dataset(tmp_path_factory.mktemp("fault-data"), n_train=3100, n_test=100)


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
    proc = start(["pretrain", f"dataset.root={data}", *LONG], tmp_path)
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
        proc = start(["pretrain", f"resume={run}"], tmp_path)
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
    proc = start(["pretrain", f"dataset.root={data}", *LONG], tmp_path)
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
        resumed = mnist("pretrain", f"resume={run}", cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        assert "resuming after step" in resumed.stdout
        assert_same_run(uninterrupted, run)


def test_a_second_ctrl_c_stops_at_once_and_leaves_whole_files(tmp_path: Path, data: Path) -> None:
    proc = start(["pretrain", f"dataset.root={data}", *FAST, "trainer.epochs=50"], tmp_path)
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


# ---- bad input: each ends in exit code 2 and one line that says what is wrong and how to fix it ----


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny finished pretrain run, and the folder it ran in."""
    cwd = tmp_path_factory.mktemp("trained")
    data = write_dataset(cwd / "data")
    result = mnist("pretrain", f"dataset.root={data}", *FAST, "trainer.epochs=1", cwd=cwd)
    assert result.returncode == 0, result.stderr
    [run] = run_dirs(cwd, "pretrain")
    return run, cwd


def damaged_data(root: Path, how: str) -> Path:
    """A copy of the tiny data set with one file damaged."""
    write_dataset(root)
    images, labels = root / "train-images-idx3-ubyte.gz", root / "train-labels-idx1-ubyte.gz"
    if how == "magic":
        images.write_bytes(gzip.compress(b"\x00\x00\x09\x03" + gzip.decompress(images.read_bytes())[4:]))
    elif how == "truncated":
        images.write_bytes(gzip.compress(gzip.decompress(images.read_bytes())[:5000]))
    elif how == "count":
        raw = gzip.decompress(labels.read_bytes())
        labels.write_bytes(gzip.compress(raw[:4] + (100).to_bytes(4, "big") + raw[8:108]))
    elif how == "label":
        raw = bytearray(gzip.decompress(labels.read_bytes()))
        raw[8] = 42
        labels.write_bytes(gzip.compress(bytes(raw)))
    return root


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def bad_checkpoint(cwd: Path, run: Path, how: str) -> str:
    path = cwd / f"{how}.ckpt"
    if how == "truncated":
        path.write_bytes((run / "checkpoints" / "best.ckpt").read_bytes()[:3000])
    elif how == "pickle":
        torch.save({"format": "mnist-cli-checkpoint", "version": 1, "payload": Evil()}, path)
    elif how == "text":
        path.write_text("not a checkpoint")
    elif how == "foreign":
        torch.save({"state_dict": {}}, path)
    return str(path)


BAD = [
    # command line and config
    (["train"], "unknown stage 'train'"),
    (["pretrain", "model=vgg"], "unknown model 'vgg': choose one of cnn"),
    (["pretrain", "optimizer.lr=-1"], "optimizer.lr=-1 is not valid"),
    (["pretrain", "trainer.batch_size=0"], "trainer.batch_size=0 is not valid"),
    (["pretrain", "dataset.val_size=2.0"], "dataset.val_size=2.0 is not valid"),
    (["pretrain", "trainer.epochs=ten"], "trainer.epochs='ten' is not valid"),
    (["pretrain", "trainer.epoch=3"], "Could not override 'trainer.epoch': Key 'epoch' is not in struct"),
    (["pretrain", "trainer.epochs=[3"], "no viable alternative at input"),
    (["pretrain", "optimizer.lr=1e-3,1e-2"], "has several values: add -m to sweep"),
    (["pretrain", "dataset.root=${oc.env:NO_SUCH_VARIABLE}"], "NO_SUCH_VARIABLE"),
    (["pretrain", "outputs_root=notes.txt/runs"], "notes.txt is not a folder"),
    (["pretrain", "-m", "--cfg", "job"], "-m and --cfg do not go together"),
    (["pretrain", "hparams_search=optuna"], "hparams_search=... is for sweeps: add -m"),
    (["predict", "ckpt=x.ckpt"], "predict needs images: add input="),
    (["predict", "ckpt={run}", "input=nowhere/*.png"], "input=nowhere/*.png: no image files there"),
    # data files
    (["pretrain", "dataset.root=nowhere", "dataset.download=false"], "not found in nowhere or nowhere/MNIST/raw"),
    (["pretrain", "dataset.root={data:magic}"], "magic"),
    (["pretrain", "dataset.root={data:truncated}"], "truncated"),
    (["pretrain", "dataset.root={data:count}"], "100 labels"),
    (["pretrain", "dataset.root={data:label}"], "label 42 is out of range for 10 classes"),
    # checkpoints
    (["eval"], "eval needs a checkpoint"),
    (["eval", "ckpt=missing.ckpt"], "checkpoint missing.ckpt does not exist"),
    (["finetune", "ckpt=latest", "outputs_root=empty"], "no checkpoints under empty/"),
    (["eval", "ckpt={ckpt:text}"], "not a readable checkpoint"),
    (["eval", "ckpt={ckpt:truncated}"], "truncated or corrupt"),
    (["eval", "ckpt={ckpt:foreign}"], "not an mnist checkpoint"),
    (["eval", "ckpt={ckpt:pickle}"], "refused: it holds Python objects"),
    (["finetune", "ckpt={run}", "model=resnet18"], "does not match the checkpoint, which holds a cnn"),
    (["eval", "ckpt={run}", "dataset.classes=[a,b]"], "predicts 10 classes but mnist has 2"),
    (["finetune", "ckpt={run}", "objective=contrastive"], "objective=contrastive is for `mnist pretrain`"),
    (["finetune", "ckpt={run}", "finetune.strategy=lora"], "finetune.strategy=lora adapts a vit's linear layers"),
    # resume
    (["pretrain", "resume=nowhere"], "not a run directory with checkpoints/last.ckpt"),
    (["pretrain", "resume={run}"], "that run already finished"),
    (["finetune", "resume={stopped}"], "is a pretrain run; resume it with `mnist pretrain"),
    (["pretrain", "resume={stopped}", "trainer.epochs=5"], "drop the other overrides"),
]


def try_bad_input(args: list[str], run: Path, cwd: Path) -> subprocess.CompletedProcess:
    """Fill in the placeholders of `args` (damaged data, bad checkpoints, runs) and run mnist in `cwd`."""
    cwd.mkdir()
    (cwd / "notes.txt").write_text("notes")
    filled = []
    for arg in args:
        if "{data:" in arg:
            arg = f"dataset.root={damaged_data(cwd / 'data', arg.split(':')[1].rstrip('}'))}"
        elif "{ckpt:" in arg:
            arg = f"ckpt={bad_checkpoint(cwd, run, arg.split(':')[1].rstrip('}'))}"
        elif "{stopped}" in arg:  # a copy of the run, marked as interrupted
            stopped = cwd / "stopped"
            shutil.copytree(run, stopped)
            write_text(stopped / "summary.json", json.dumps({**summary(run), "status": "interrupted"}))
            arg = arg.replace("{stopped}", str(stopped))
        filled.append(arg.replace("{run}", str(run)))
    return mnist(*filled, cwd=cwd)


@pytest.fixture(scope="module")
def bad_results(
    tmp_path_factory: pytest.TempPathFactory, trained: tuple[Path, Path]
) -> dict[str, subprocess.CompletedProcess]:
    """Every bad input's result, run two at a time (each is a process that mostly waits on imports)."""
    run, _ = trained
    before = summary(run)
    root = tmp_path_factory.mktemp("bad")
    with ThreadPoolExecutor(2) as pool:
        results = pool.map(lambda item: try_bad_input(item[1][0], run, root / str(item[0])), enumerate(BAD))
        by_args = {" ".join(args): result for (args, _), result in zip(BAD, results)}
    assert summary(run) == before  # the earlier run's record is untouched
    assert not any(root.rglob("pwned"))  # the pickle's code never ran
    return by_args


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(args) for args, _ in BAD])
def test_bad_input_is_one_line_and_exit_code_2(
    bad_results: dict[str, subprocess.CompletedProcess], args: list[str], message: str
) -> None:
    result = bad_results[" ".join(args)]
    BAD_INPUTS.append((" ".join(args), result.stderr.strip()))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
