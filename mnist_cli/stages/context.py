"""What the job (job.py) hands a stage: the config, the run directory, the command line's overrides,
the checkpoint a resumed run continues from and the job's tracker; and the one moment the config
takes what the stage learned from its data and its checkpoint (classes, normalization, the
checkpoint's model) and becomes final: settle(), after which it is read-only and exactly what the
run's config.yaml records."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from mnist_cli.errors import UserError
from mnist_cli.loggers.base import Tracker
from mnist_cli.run_dir import RunDir

if TYPE_CHECKING:
    from mnist_cli.training.source import Source


@dataclass
class StageContext:
    cfg: DictConfig  # the job's config; read-only once settled
    run: RunDir
    overrides: list[str]  # the command line's key=value overrides (what it chose over the defaults)
    resume: dict[str, Any] | None  # resume=<run dir>: the run's last.ckpt
    tracker: Tracker
    settled: bool = False

    def settle(self, **learned: Any) -> DictConfig:
        """The config with each top-level key of `learned` replaced whole (dataset=..., model=...),
        read-only from here on, written to config.yaml and told to the tracker. Once per stage."""
        if self.settled:
            raise RuntimeError("a stage settles its config once")
        cfg = copy.deepcopy(self.cfg)
        for key, value in learned.items():
            cfg[key] = value
        OmegaConf.set_readonly(cfg, True)
        self.run.write_config(cfg)
        self.tracker.settled(cfg)
        self.cfg, self.settled = cfg, True
        return cfg

    def source(self) -> Source:
        """What ckpt= names, loaded once (training/source.py)."""
        from mnist_cli.training.source import Source  # torch: not for `--cfg job`

        return Source.load(self.cfg.ckpt, self.cfg.outputs_root)

    def settle_with_source(self, onnx: bool = False) -> tuple[DictConfig, Source | None]:
        """ckpt= loaded once, and settle() with what it describes (its model, its data set or the
        one the command line chose, its preprocessing, the resolved paths). With `onnx` (predict,
        serve, explain) ckpt= may be an exported .onnx file, which describes nothing of the config
        (its own records hold its classes and normalization): its source is None."""
        if str(self.cfg.ckpt).endswith(".onnx"):
            if not onnx:
                raise UserError(
                    f"{self.cfg.stage.name} takes a checkpoint (a run dir or .ckpt), not an .onnx file; "
                    "predict and serve take one"
                )
            return self.settle(), None
        source = self.source()
        return self.settle(**source.config(self.cfg, self.overrides)), source
