"""logger=wandb: the job as one Weights & Biases run, written inside the run directory (wandb/) and,
with an API key configured, uploaded as it goes; without one, offline, for a later `wandb sync`.
The resolved config is the run's config, each epoch's metrics its history (step = epoch), the
summary's final numbers its summary, the run's files its files. Its id goes into summary.json,
where a resumed job finds it and continues that run; conf/logger/wandb.yaml says what each
argument means."""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_cli.errors import UserError
from mnist_cli.loggers.base import Tracker, final_labels, git_commit, numbers, run_files
from mnist_cli.run_dir import RunDir


def has_wandb_key() -> bool:
    """Whether W&B can log in without asking: WANDB_API_KEY, or `wandb login`'s entry in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


class WandB(Tracker):
    def __init__(
        self,
        name: str,
        mode: str,
        project: str,
        entity: str | None,
        group: str | None,
        log_checkpoint: bool,
        config: DictConfig,
        run: RunDir,
        summary: dict[str, Any],
        resumed: bool,
    ):
        super().__init__(name, config, run, summary, resumed)
        try:
            import wandb
        except ImportError:
            raise UserError("logger=wandb needs wandb: pip install 'mnist-cli[wandb]' (or drop logger=)") from None
        self.wandb, self.log_checkpoint = wandb, log_checkpoint
        mode = mode if mode != "auto" else "online" if has_wandb_key() else "offline"
        previous = summary.get("wandb_run_id") if resumed else None
        stage = config.stage.name
        self.active = wandb.init(
            project=project,
            entity=entity,
            group=group or (run.path.parent.name if run.path.name.isdigit() else None),  # a sweep's
            name=f"{stage}/{run.path.name}",
            notes=str(run.path),
            tags=[stage],
            dir=str(run.path),
            mode=mode,
            id=previous,
            resume="allow" if previous else None,
            settings=wandb.Settings(console="off", silent=True, x_save_requirements=False),
        )
        summary.update(wandb_run_id=self.active.id, wandb_mode=mode)
        if commit := git_commit():
            self.active.summary["git_commit"] = commit

    def settled(self, config: DictConfig) -> None:
        """The settled config as the W&B run's config (a resumed run keeps its own), its model as a tag."""
        if not self.resumed:
            self.active.config.update(OmegaConf.to_container(config, resolve=True))
        self.active.tags = (*self.active.tags, str(OmegaConf.select(config, "model.name")))

    def log_epoch(self, row: dict[str, Any]) -> None:
        self.wandb.log(numbers(row, "epoch"), step=row["epoch"])

    def finish(self, summary: dict[str, Any]) -> None:
        """Put the summary's numbers and status in the W&B run's summary, save the run's files, finish it."""
        self.active.summary.update({**numbers(summary), **final_labels(summary)})
        best = [self.run.best_ckpt] if self.log_checkpoint and self.run.best_ckpt.is_file() else []
        for file in [*run_files(self.run), *best]:
            self.wandb.save(str(file), base_path=str(self.run.path), policy="now")
        self.active.finish(exit_code=0 if summary.get("status") == "completed" else 1)
        if self.active.settings.mode == "offline":
            folder = Path(self.active.dir).parent
            logging.getLogger(__name__).info(
                "W&B run %s kept offline: upload it with `wandb sync %s`", self.active.id, folder
            )
