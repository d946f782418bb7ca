"""Folders of image files, in torchvision's ImageFolder layout: DIR/train/<class>/*, DIR/test/<class>/*
and an optional DIR/val/<class>/*, or one tree DIR/<class>/* (its splits carved by datasets.py).

Every file under a class folder (at any depth; names starting with a dot are left out) is read
with Pillow and made the model's 28x28 input by the `preprocess` config (data/images.py), in one
process per core, once: the result is cached (data/cache.py). A file that is not a readable image
is skipped and listed, or refused with dataset.on_bad_file=fail."""

from __future__ import annotations

import hashlib
import inspect
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mnist_cli.data.cache import cached
from mnist_cli.data.datasets import Dataset, assemble
from mnist_cli.data.images import SIZE, load_grayscale, preprocess
from mnist_cli.data.split import TEST, TRAIN, UNDIVIDED, VAL
from mnist_cli.errors import UserError
from mnist_cli.run_dir import natural_key

log = logging.getLogger(__name__)

PARTS = {"train": TRAIN, "val": VAL, "test": TEST}  # a split layout's folders
CHUNK = 256  # files a worker converts per task


class Entry(NamedTuple):
    part: int  # TRAIN, VAL, TEST, or UNDIVIDED (one tree)
    name: str  # the class: its folder's name
    folder: str  # the class folder
    file: str
    size: int  # bytes
    mtime_ns: int


def files_under(folder: str) -> list[os.DirEntry]:
    """The files under `folder` at any depth, in name order, leaving out names that start with a dot
    (os.scandir and plain strings: pathlib would take seconds for 60,000 files)."""
    with os.scandir(folder) as found:
        visible = sorted((e for e in found if not e.name.startswith(".")), key=lambda e: e.name)
    files = []
    for entry in visible:
        files += files_under(entry.path) if entry.is_dir() else [entry]
    return files


def scan(root: Path) -> list[Entry]:
    """Every file under a class folder, in a stable order."""
    if not root.is_dir():
        raise UserError(f"dataset.root={root}: no such folder; give the folder that holds the class folders")
    split_layout = any((root / part).is_dir() for part in ("train", "test"))
    tops = [(n, root / p) for p, n in PARTS.items() if (root / p).is_dir()] if split_layout else [(UNDIVIDED, root)]
    found = []
    for part, top in tops:
        classes = sorted((d.name for d in top.iterdir() if d.is_dir() and not d.name.startswith(".")), key=natural_key)
        for name in classes:
            folder = str(top / name)
            files = files_under(folder)
            if not files:
                raise UserError(f"{folder}: an empty class folder; put its images there or remove it")
            for file in files:
                stat = file.stat()
                found.append(Entry(part, name, folder, file.path, stat.st_size, stat.st_mtime_ns))
    if not found:
        layout = f"{root}/<class>/* or {root}/train/<class>/* and {root}/test/<class>/*"
        raise UserError(f"dataset.root={root}: no class folders with files in it; lay the images out as {layout}")
    return found


def convert(task: tuple[list[str], dict[str, Any]]) -> tuple[np.ndarray, list[tuple[int, int]], list[str | None]]:
    """A worker's share: (28x28 inputs, each file's own (height, width), each file's error or None)."""
    paths, settings = task
    cfg = SimpleNamespace(**settings)
    images = np.zeros((len(paths), SIZE, SIZE), dtype=np.uint8)
    sizes: list[tuple[int, int]] = []
    errors: list[str | None] = []
    for i, path in enumerate(paths):
        try:
            pixels = load_grayscale(Path(path))
            images[i] = preprocess(pixels, cfg)
            sizes.append(pixels.shape)
            errors.append(None)
        except UserError as e:
            sizes.append((0, 0))
            errors.append(str(e))
    return images, sizes, errors


def progress_bar() -> Progress:
    """A bar over the files converted; silent when not on a terminal."""
    console = Console()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def convert_all(paths: list[str], settings: dict[str, Any], workers: int) -> tuple[np.ndarray, list, list]:
    """convert() over all `paths`, in `workers` processes, with a progress bar."""
    tasks = [(paths[i : i + CHUNK], settings) for i in range(0, len(paths), CHUNK)]
    chunks = []
    with progress_bar() as progress, ExitStack() as stack:
        bar = progress.add_task("converting images", total=len(paths))
        if workers > 1 and len(tasks) > 1:
            context = multiprocessing.get_context("fork")  # the workers need no torch, only Pillow and numpy
            done = stack.enter_context(ProcessPoolExecutor(workers, mp_context=context)).map(convert, tasks)
        else:
            done = map(convert, tasks)
        for chunk in done:
            chunks.append(chunk)
            progress.advance(bar, len(chunk[0]))
    images = np.concatenate([c[0] for c in chunks]) if chunks else np.zeros((0, SIZE, SIZE), np.uint8)
    return images, [size for c in chunks for size in c[1]], [error for c in chunks for error in c[2]]


def read(cfg: DictConfig, preprocess_cfg: DictConfig, train: bool = True) -> Dataset:
    """The data set of the class folders under dataset.root, each image made an input by `preprocess_cfg`."""
    return replace(assemble(cfg, read_folder(cfg, preprocess_cfg)), preprocessed=preprocess_cfg.mode)


def read_folder(cfg: DictConfig, preprocess_cfg: DictConfig) -> dict[str, Any]:
    """The converted tree (see datasets.assemble), from the cache when nothing changed."""
    root = Path(cfg.root).expanduser().resolve()
    entries = scan(root)
    settings = OmegaConf.to_container(preprocess_cfg, resolve=True)
    start = len(str(root)) + 1
    key = {
        "root": str(root),
        "files": [[e.file[start:], e.size, e.mtime_ns] for e in entries],
        "preprocess": settings,
        "code": hashlib.sha256(Path(inspect.getfile(preprocess)).read_bytes()).hexdigest(),  # how they are applied
    }

    def build() -> dict[str, Any]:
        started = time.perf_counter()
        workers = cfg.workers or os.cpu_count() or 1
        images, sizes, errors = convert_all([e.file for e in entries], settings, workers)
        names = sorted({e.name for e in entries}, key=natural_key)
        ok = [error is None for error in errors]
        index = {name: i for i, name in enumerate(names)}
        log.info(
            f"converted {sum(ok):,} images of {root} in {time.perf_counter() - started:.1f} s "
            f"({workers} processes, preprocess {settings['mode']})"
        )
        keep = torch.tensor(ok, dtype=torch.bool)
        return {
            "images": torch.from_numpy(images)[keep],
            "labels": torch.tensor([index[e.name] for e in entries], dtype=torch.long)[keep],
            "parts": torch.tensor([e.part for e in entries], dtype=torch.long)[keep],
            "sizes": torch.tensor(sizes, dtype=torch.long).reshape(-1, 2)[keep],
            "names": names,
            "skipped": [f"{e.file}: {error}" for e, error in zip(entries, errors) if error is not None],
        }

    converted = cached(cfg.cache_dir, f"folder-{root.name}", key, build)
    names = converted["names"]
    readable = set(zip(converted["parts"].tolist(), converted["labels"].tolist()))
    for part, name, folder in dict.fromkeys(e[:3] for e in entries):
        if (part, names.index(name)) not in readable:
            raise UserError(f"{folder}: none of its files is a readable image; put images there or remove it")
    return converted
