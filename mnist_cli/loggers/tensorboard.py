"""logger=tensorboard: each epoch's metrics (the metrics.csv columns) as TensorBoard scalars,
step = epoch, in the run directory (a stage that trains nothing writes none)."""

from __future__ import annotations

import importlib.util
from typing import Any

from omegaconf import DictConfig

from mnist_cli.errors import UserError
from mnist_cli.loggers.base import Tracker, numbers
from mnist_cli.run_dir import RunDir


class TensorBoard(Tracker):
    def __init__(self, name: str, dir: str, config: DictConfig, run: RunDir, summary: dict[str, Any], resumed: bool):
        super().__init__(name, config, run, summary, resumed)
        if importlib.util.find_spec("tensorboard") is None:  # said before training, not at its first epoch
            raise UserError(
                "logger=tensorboard needs the tensorboard package: pip install 'mnist-cli[tensorboard]' (or drop logger=)"
            )
        self.folder = run.path / dir
        self.writer = None  # made at the first epoch

    def log_epoch(self, row: dict[str, Any]) -> None:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.folder))
        for key, value in numbers(row, "epoch").items():
            self.writer.add_scalar(key, value, global_step=row["epoch"])
        self.writer.flush()

    def finish(self, summary: dict[str, Any]) -> None:
        if self.writer is not None:
            self.writer.close()
