"""Where each epoch's metrics go besides metrics.jsonl and metrics.csv (which are always written):
nowhere else (logger=none) or TensorBoard (logger=tensorboard)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from omegaconf import DictConfig

from mnist_cli.errors import UserError
from mnist_cli.run_dir import RunDir

EpochCallback = Callable[[dict[str, Any], Any], None]


@contextmanager
def epoch_logger(cfg: DictConfig, run: RunDir) -> Iterator[EpochCallback | None]:
    """A callback for the trainer's epoch ends (metrics row, model), or None for logger=none."""
    if cfg.name == "none" or not run.writable:
        yield None
        return
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError(
            "logger=tensorboard needs the tensorboard package: pip install 'mnist-cli[tensorboard]' (or drop logger=)"
        ) from None
    writer = SummaryWriter(log_dir=str(run.path / cfg.dir))

    def log_epoch(row: dict[str, Any], model: Any) -> None:
        for key, value in row.items():
            if key != "epoch" and value is not None:  # None: nothing to measure this epoch
                writer.add_scalar(key, value, global_step=row["epoch"])
        writer.flush()

    try:
        yield log_epoch
    finally:
        writer.close()
