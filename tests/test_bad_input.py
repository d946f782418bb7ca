"""Bad input: every mistake a person can make on the command line, in data files, checkpoints and
resume= ends in exit code 2 and one line on stderr that says what is wrong and how to fix it (the
lines are listed at the end of the test output). Run with the fault suite: pytest -m faults."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from mnist_cli.run_dir import write_text

from conftest import BAD_INPUTS, FAST, mnist, run_dirs, summary, write_dataset

pytestmark = pytest.mark.faults


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
    (["pretrain", "--config-name", "mine"], "--config-name is not supported: mnist composes its own conf/"),
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
    # serve
    (["serve"], "serve needs a checkpoint"),
    (["serve", "ckpt={run}", "serve.port=70000"], "serve.port=70000 is not valid"),
    (["serve", "ckpt={ckpt:truncated}"], "truncated or corrupt"),
    (["serve", "ckpt=missing.onnx"], "ckpt=missing.onnx: no such file"),
    (["eval", "ckpt=model.onnx"], "eval takes a checkpoint (a run dir or .ckpt), not an .onnx file"),
    (["serve", "ckpt=broken.onnx"], "broken.onnx: not a readable ONNX model"),
    # resume
    (["pretrain", "resume=nowhere"], "not a run directory with checkpoints/last.ckpt"),
    (["pretrain", "resume={run}"], "that run already finished"),
    (["finetune", "resume={stopped}"], "is a pretrain run; resume it with `mnist pretrain"),
    (["pretrain", "resume={stopped}", "trainer.epochs=5"], "these overrides change it: trainer.epochs=5 (saved: 1)"),
    (["pretrain", "resume={stopped}", "experiment=cnn_fast"], "experiment=cnn_fast (saved: not given)"),
]


def try_bad_input(args: list[str], run: Path, cwd: Path) -> subprocess.CompletedProcess:
    """Fill in the placeholders of `args` (damaged data, bad checkpoints, runs) and run mnist in `cwd`."""
    cwd.mkdir()
    (cwd / "notes.txt").write_text("notes")
    (cwd / "broken.onnx").write_text("not a model")
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
