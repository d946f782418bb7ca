"""The stage context: what a stage learns from its data and checkpoint is applied to the config
once, after which the config is read-only and is exactly what the run's config.yaml records."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from omegaconf.errors import ReadonlyConfigError

from mnist_cli.config.compose import compose_config
from mnist_cli.loggers.base import Tracker
from mnist_cli.models import build_model
from mnist_cli.run_dir import RunDir
from mnist_cli.stages.context import StageContext
from mnist_cli.stages.training import read_splits
from mnist_cli.training.checkpoint import save_checkpoint


class Recording(Tracker):
    """A tracker that keeps the config it is told the stage settled on."""

    def settled(self, config) -> None:
        self.config = config


def context(tmp_path: Path, *overrides: str) -> StageContext:
    cfg, run = compose_config(*overrides), RunDir(tmp_path / "run")
    return StageContext(cfg, run, list(overrides), None, Recording("none", cfg, run, {}, False))


def test_settling_applies_what_the_data_says_once_then_the_config_is_read_only(tmp_path: Path, tiny_data: Path) -> None:
    ctx = context(tmp_path, f"dataset.root={tiny_data}", "dataset.mean=null", "dataset.std=null")
    splits = read_splits(ctx.cfg)
    cfg = ctx.settle(dataset=splits.dataset)
    assert cfg is ctx.cfg and cfg.dataset.mean == splits.dataset.mean != None  # noqa: E711 (measured on the files)
    assert OmegaConf.load(tmp_path / "run" / "config.yaml") == OmegaConf.to_container(cfg, resolve=True)
    with pytest.raises(ReadonlyConfigError):
        cfg.trainer.epochs = 1
    with pytest.raises(ReadonlyConfigError):
        cfg.dataset.classes = ["a"]
    with pytest.raises(RuntimeError, match="once"):
        ctx.settle()


def test_a_stage_starting_from_a_checkpoint_settles_on_its_model_and_resolved_path(
    tmp_path: Path, tiny_data: Path
) -> None:
    trained = compose_config("model=vit_mini", f"dataset.root={tiny_data}")
    model = build_model(trained.model, 10)
    payload = {"config": OmegaConf.to_container(trained, resolve=True), "num_classes": 10, "objective": "supervised"}
    (tmp_path / "old" / "checkpoints").mkdir(parents=True)
    save_checkpoint(tmp_path / "old" / "checkpoints" / "best.ckpt", {**payload, "model": model.state_dict()})
    ctx = context(tmp_path, "stage=eval", f"ckpt={tmp_path / 'old'}", "dataset.val_size=0.1")
    cfg, source = ctx.settle_with_source()
    assert cfg.ckpt == str(tmp_path / "old" / "checkpoints" / "best.ckpt") and cfg.model.name == "vit"
    assert cfg.dataset.root == str(tiny_data) and cfg.dataset.val_size == 0.1  # the checkpoint's, with the override
    assert torch.equal(source.model().backbone.pos_embed, model.backbone.pos_embed)
    assert OmegaConf.load(tmp_path / "run" / "config.yaml").model.patch == 7
    assert ctx.tracker.config.model.name == "vit"  # what the tracker records is what ran, not the composed cnn
