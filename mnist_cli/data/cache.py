"""Converted data sets, kept on disk so that a folder of images or a CSV file is decoded once.

An entry is named by a hash of everything it was made from (the files' names, sizes and
modification times, and the settings that converted them): a changed file or setting makes a new
entry, never a stale answer. Entries hold plain tensors and strings, read with weights_only=True."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mnist_cli.errors import UserError
from mnist_cli.run_dir import write_bytes

log = logging.getLogger(__name__)

VERSION = 1  # of the entries' contents; a new one makes every older entry unused


def cache_path(cache_dir: str, name: str, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps({"version": VERSION, **key}, sort_keys=True).encode()).hexdigest()
    return Path(cache_dir).expanduser() / f"{name}-{digest[:20]}.pt"


def cached(
    cache_dir: str | None, name: str, key: dict[str, Any], build: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """build()'s result for `key`: read from `cache_dir` when an entry is there, else built and
    written there (cache_dir None: always built, nothing written)."""
    if cache_dir is None:
        return build()
    path = cache_path(cache_dir, name, key)
    if path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a damaged entry is made again
            log.warning(f"{path}: unreadable cache entry ({type(e).__name__}); converting the files again")
    value = build()
    buffer = io.BytesIO()
    torch.save(value, buffer)
    try:
        write_bytes(path, buffer.getvalue())
        log.info(f"cached in {path}")
    except UserError as e:  # the data is there to train on; only the next start is slower
        log.warning(f"not cached: {e}")
    return value
