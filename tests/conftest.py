"""Shared fixtures and helpers: tiny generated IDX data sets, running the `mnist` command, training
in process, and reading a run directory."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from mnist_cli.config.compose import compose_config
from mnist_cli.data.idx import write_idx
from mnist_cli.data.split import Split
from mnist_cli.models import build_model
from mnist_cli.run_dir import RunDir
from mnist_cli.stages.training import read_splits, training_task
from mnist_cli.training.checkpoint import save_checkpoint
from mnist_cli.training.optim import build_optimizer, build_scheduler
from mnist_cli.training.trainer import Trainer

# A folder with the four real MNIST files; a relative path is read from where pytest was started
# (the tests run the CLI in temporary folders).
REAL_DATA = str(Path(os.environ["MNIST_CLI_REAL_DATA"]).resolve()) if os.environ.get("MNIST_CLI_REAL_DATA") else None

# Debian's chromium and chromium-driver (.ci/run installs both), for the pages' browser tests.
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")

# (what was tried, what mnist said): listed at the end of the test output.
BAD_INPUTS: list[tuple[str, str]] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if BAD_INPUTS:
        terminalreporter.section("bad inputs tried and what mnist said")
        for tried, said in BAD_INPUTS:
            terminalreporter.write_line(f"{tried}\n    -> {said}")


@pytest.fixture(scope="session", autouse=True)
def conversion_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Converted image folders and CSV files are cached here, not in the home folder (the runs in
    subprocesses inherit it)."""
    folder = tmp_path_factory.mktemp("converted")
    os.environ["MNIST_CLI_CACHE"] = str(folder)
    return folder


def make_images(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """28x28 uint8 images whose class is easy to learn: a bright square at a class-specific place."""
    g = torch.Generator().manual_seed(seed)
    images = (torch.rand(len(labels), 28, 28, generator=g) * 60).to(torch.uint8)
    for i, label in enumerate(labels.tolist()):
        row, col = divmod(label, 4)
        images[i, 2 + 8 * row : 8 + 8 * row, 2 + 6 * col : 8 + 6 * col] = 255
    return images


def write_dataset(root: Path, n_train: int = 256, n_test: int = 128, gz: bool = True, layout: str = "flat") -> Path:
    folder = root / "MNIST" / "raw" if layout == "torchvision" else root
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for split, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        labels = torch.arange(n) % 10
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", make_images(labels, seed))
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", labels.to(torch.uint8))
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("tiny-mnist"))


@pytest.fixture(scope="session")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default `mnist pretrain` on the real MNIST files of MNIST_CLI_REAL_DATA, run once for the
    tests that need a model that reads real digits (test_real_data.py checks the run itself)."""
    if not REAL_DATA:
        pytest.skip("set MNIST_CLI_REAL_DATA to a folder with the real MNIST IDX files")
    cwd = tmp_path_factory.mktemp("real")
    result = mnist("pretrain", "model=cnn", f"dataset.root={REAL_DATA}", cwd=cwd)
    assert result.returncode == 0, result.stderr
    [run] = run_dirs(cwd, "pretrain")
    return run


# Overrides that make a run take a second or two on tiny data (14 optimizer steps: no minimum).
FAST = ["trainer.epochs=2", "trainer.batch_size=32", "trainer.min_steps=0", "model.channels=[8,16]", "model.hidden=32"]
TINY_VIT = ["model=vit", "model.dim=32", "model.depth=2", "model.heads=2"]  # a ViT that trains in a second


def mnist(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `python -m mnist_cli ARGS` in `cwd` and capture its output."""
    # The runs see only the data the test names, not a MNIST_CLI_DATA of the developer's.
    full_env = {key: value for key, value in os.environ.items() if key != "MNIST_CLI_DATA"}
    full_env.update({"COLUMNS": "200", **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "mnist_cli", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600
    )


class Server:
    """A running `mnist serve` process: its URL, its stdout lines as they come, its stderr lines."""

    def __init__(self, process: subprocess.Popen):
        self.process = process
        self.lines: queue.Queue[str] = queue.Queue()
        self.errors: list[str] = []
        threading.Thread(target=lambda: [self.lines.put(line) for line in process.stdout], daemon=True).start()
        threading.Thread(target=lambda: self.errors.extend(process.stderr), daemon=True).start()
        self.url = self.wait_for_url()

    def wait_for_url(self, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                found = re.search(r"http://127\.0\.0\.1:\d+/", self.lines.get(timeout=0.5))
            except queue.Empty:
                found = None
            if found:
                return found.group()
            if self.process.poll() is not None:
                time.sleep(0.2)  # the rest of stderr
                raise AssertionError(f"mnist exited {self.process.returncode}: {''.join(self.errors)}")
        raise AssertionError("mnist printed no URL")

    def wait_until_ready(self, route: str = "ready", timeout: float = 60) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + route).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.url}{route} did not answer 200 in {timeout} s")


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium driven by selenium, for a test module."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",  # as root in a container
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",  # no connections beyond the page's own (this machine has no network)
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1000,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


@contextmanager
def serving(*args: str, cwd: Path, stage: str = "serve") -> Iterator[Server]:
    """`mnist serve ARGS serve.port=0` (or `mnist label ... label.port=0`) in `cwd`, ready; stopped
    with SIGTERM afterwards if still running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mnist_cli", stage, f"{stage}.port=0", *args],
        cwd=cwd,
        env={key: value for key, value in os.environ.items() if key != "MNIST_CLI_DATA"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        server = Server(process)
        server.wait_until_ready("ready" if stage == "serve" else "items")
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=60)


def start_mnist(*args: str, cwd: Path) -> subprocess.Popen:
    """Start `python -m mnist_cli ARGS` in `cwd` (its stderr captured), for a test that signals it."""
    env = {k: v for k, v in os.environ.items() if k != "MNIST_CLI_DATA"}
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def interrupted_after_an_epoch(*args: str, cwd: Path) -> Path:
    """Start `mnist ARGS`, stop it with Ctrl-C (SIGINT) once its first epoch is written, and return
    its run directory (which the test then resumes)."""
    proc = start_mnist(*args, cwd=cwd)
    deadline = time.time() + 120
    while not list(cwd.glob("outputs/*/*/metrics.jsonl")) and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)  # during epoch 2, after epoch 1 was logged
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    [run] = cwd.glob("outputs/*/*/metrics.jsonl")
    return run.parent


def run_dirs(cwd: Path, stage: str) -> list[Path]:
    return sorted(p for p in (cwd / "outputs" / stage).iterdir() if p.is_dir())


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


TIMING = ("epoch_time_s", "val_time_s", "images_per_s", "elapsed_s", "target_elapsed_s")


def metrics(run: Path) -> list[dict]:
    """The run's metrics.jsonl rows without their timings: what a rerun reproduces."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return untimed(rows)


def untimed(rows: list[dict]) -> list[dict]:
    """Metrics rows without their timings (which differ between any two runs)."""
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def fit(
    tmp_path: Path,
    data: Path,
    *overrides: str,
    model=None,
    shuffle_labels: bool = False,
    shuffle_pool_labels: bool = False,
    resume: dict | None = None,
):
    """Train in process as `mnist pretrain` would (FAST unless overridden) into tmp_path/run:
    (FitResult, RunDir, the trained model, the Trainer, the config). `shuffle_labels`: train on
    the training images with their labels shuffled; `shuffle_pool_labels`: shuffle the hidden labels
    of the unlabeled pool (semi_supervised); `resume`: a last.ckpt to continue."""
    fast = FAST if not any(o.startswith("model=") for o in overrides) else FAST[:3]  # FAST[3:] are the CNN's
    cfg = compose_config(f"dataset.root={data}", "dataset.download=false", *fast, *overrides)
    torch.manual_seed(cfg.trainer.seed)
    splits = read_splits(cfg)
    cfg.dataset = splits.dataset
    if shuffle_labels:
        splits.train = Split(splits.train.images, shuffled(splits.train.labels))
    if shuffle_pool_labels:
        splits.pool = Split(splits.pool.images, shuffled(splits.pool.labels))
    task = training_task(cfg, model or build_model(cfg.model, 10), splits, torch.device("cpu"))
    model = task.model
    trainer = Trainer(cfg.trainer, torch.device("cpu"), task)
    length = trainer.length(len(splits.train))
    optimizer = build_optimizer(cfg.optimizer, model)
    scheduler = build_scheduler(cfg.scheduler, optimizer, length.steps_per_epoch, length.total_steps)
    run = RunDir(tmp_path / "run")
    info = {
        "config": {"model": OmegaConf.to_container(cfg.model)},
        "model_name": cfg.model.name,
        "num_classes": 10,
        "objective": cfg.objective.name,
    }
    result = trainer.fit(model, splits.train, splits.val, optimizer, scheduler, run, info, resume)
    return result, run, model, trainer, cfg


def shuffled(labels: torch.Tensor) -> torch.Tensor:
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))]


def accuracy_of(trainer: Trainer, model: torch.nn.Module, split: Split) -> float:
    return trainer.validate(model, split, split).acc


def keep_the_first_mid_epoch_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where a copy of the first last.ckpt written mid-epoch will be (a run continued from it is a
    run stopped there)."""
    saved = tmp_path / "mid-epoch.ckpt"

    def save(path: Path, payload: dict) -> None:
        save_checkpoint(path, payload)
        if payload.get("in_progress") is not None and not saved.exists():
            shutil.copy(path, saved)

    monkeypatch.setattr("mnist_cli.training.snapshots.save_checkpoint", save)
    return saved
