"""Run directories: naming them, and writing a run's files there without ever half-writing one.

Layout of a run directory (outputs/<stage>/<date>_<time>[_<n>]/):
    config.yaml            the composed, resolved config of the run
    metrics.jsonl          one line per epoch
    metrics.csv            the same rows as a table (for spreadsheets and pandas)
    summary.json           status, final metrics, paths, wall time, device, versions
    skipped.txt            data files passed over as unreadable images (dataset=folder), if any
    checkpoints/best.ckpt  weights with the best validation accuracy
    checkpoints/last.ckpt  everything needed to resume
    run.log                the log, appended to by resumed runs
    .hydra/                Hydra's record of the composition and overrides
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omegaconf import DictConfig


def unique_dir(base: str) -> str:
    """Create `base` (or `base_1`, `base_2`, ... when taken) and return its path. The directory is
    made with an atomic mkdir, so two runs started in the same second never share one."""
    Path(base).parent.mkdir(parents=True, exist_ok=True)
    n = 0
    while True:
        path = base if n == 0 else f"{base}_{n}"
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            n += 1


def natural_key(path: str | Path) -> list:
    """Order 2 before 10 (sweep job numbers, _1/_2 suffixes, class folders named by number)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success, move it over `path` in one step.

    A crash or a full disk leaves the previous file untouched and no partial file behind;
    a failed write ends in a UserError that names the file.
    """
    from mnist_cli.errors import UserError

    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(
            f"could not write {path} ({e.strerror or e}); free disk space or pick a writable folder with "
            f"outputs_root=... (any earlier {path.name} is unchanged)"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def csv_text(rows: list[dict[str, Any]]) -> str:
    """Rows of dicts as CSV text, with a header of every key in order of first appearance."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


class RunDir:
    """One run's output directory. With `writable=False` (the other ranks of a torchrun job,
    whose rank 0 writes) the write methods do nothing."""

    def __init__(self, path: str | Path, writable: bool = True):
        self.path = Path(path)
        self.writable = writable

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def best_ckpt(self) -> Path:
        return self.checkpoints / "best.ckpt"

    @property
    def last_ckpt(self) -> Path:
        return self.checkpoints / "last.ckpt"

    def remove_temporaries(self) -> None:
        """Delete the temporary files of writes that a killed run left unfinished."""
        if self.writable:
            for tmp in self.path.rglob(".*.tmp*"):
                tmp.unlink(missing_ok=True)

    def write_config(self, cfg: DictConfig) -> None:
        from omegaconf import OmegaConf

        if self.writable:
            write_text(self.path / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        if self.writable:
            write_text(self.path / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))
            write_text(self.path / "metrics.csv", csv_text(history))

    def write_skipped(self, skipped: list[str]) -> str | None:
        """skipped.txt: the data files passed over as unreadable, one "<file>: <why>" a line; the
        warning that says so, logged and returned (None when there were none)."""
        if not skipped:
            return None
        if self.writable:
            write_text(self.path / "skipped.txt", "".join(line + "\n" for line in skipped))
        warning = (
            f"{len(skipped)} file(s) skipped, not readable images: listed in {self.path / 'skipped.txt'} "
            "(dataset.on_bad_file=fail refuses them)"
        )
        logging.getLogger(__name__).warning(warning)
        return warning

    def read_summary(self) -> dict[str, Any] | None:
        path = self.path / "summary.json"
        return json.loads(path.read_text()) if path.exists() else None

    def write_summary(self, summary: dict[str, Any]) -> None:
        self.write_json("summary.json", summary)

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        if self.writable:
            write_text(self.path / name, json.dumps(data, indent=2) + "\n")
