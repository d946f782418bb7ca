"""The learning-rate schedules and the optimizer's parameter groups."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from torch import nn

from mnist_cli.config.compose import compose_config
from mnist_cli.data.batches import BatchPrep
from mnist_cli.models import build_model
from mnist_cli.objectives import build_task
from mnist_cli.targets import build
from mnist_cli.training.optim import build_optimizer

CONF = Path(__file__).parents[1] / "conf"


def schedule(name: str, **changes):
    return OmegaConf.merge(OmegaConf.load(CONF / "scheduler" / f"{name}.yaml"), changes)


def factors(cfg, total: int = 100, per_epoch: int = 10) -> list[float]:
    schedule = build(cfg)
    return [schedule(step, total, per_epoch) for step in range(total)]


def test_warmup_ramps_linearly_then_hands_over() -> None:
    f = factors(schedule("none", warmup_epochs=1))
    assert f[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert set(f[10:]) == {1.0}


def test_step_decays_every_step_epochs() -> None:
    f = factors(schedule("step", step_epochs=2, gamma=0.5))
    assert f[0] == f[19] == 1.0 and f[20] == 0.5 and f[99] == 0.5**4


def test_cosine_goes_from_one_to_the_floor() -> None:
    f = factors(schedule("cosine", min_lr_ratio=0.1))
    assert f[0] == 1.0 and f[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in zip(f, f[1:]))


def test_onecycle_peaks_at_pct_start() -> None:
    cfg = schedule("onecycle", pct_start=0.3, div_factor=25, final_div_factor=1e4)
    f = factors(cfg)
    assert f[0] == pytest.approx(1 / 25)
    assert max(f) == pytest.approx(1.0) and f.index(max(f)) == 30
    assert f[-1] < 1e-3


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "adadelta"])
def test_optimizer_decays_weights_not_biases(name: str) -> None:
    cfg = OmegaConf.merge(OmegaConf.load(CONF / "optimizer" / f"{name}.yaml"), {"weight_decay": 0.01})
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    model[1].requires_grad_(False)
    optimizer = build_optimizer(cfg, model)
    decayed, plain = optimizer.param_groups
    assert [p.shape for p in decayed["params"]] == [(3, 4)] and decayed["weight_decay"] == 0.01
    assert [p.shape for p in plain["params"]] == [(3,)] and plain["weight_decay"] == 0.0
    assert math.isclose(optimizer.param_groups[0]["lr"], cfg.lr)


@pytest.mark.parametrize(
    ("overrides", "undecayed"),
    [
        (["model=cnn"], set()),
        (["model=resnet18"], set()),
        (["model=vit"], {"backbone.pos_embed", "backbone.cls_token"}),
        (
            ["model=vit", "objective=mae"],
            {"classifier.backbone.pos_embed", "classifier.backbone.cls_token", "mask_token", "decoder_pos"},
        ),
    ],
    ids=["cnn", "resnet18", "vit", "vit-mae"],
)
def test_each_model_names_the_parameters_that_take_no_weight_decay(overrides: list[str], undecayed: set[str]) -> None:
    """Decayed: conv kernels and weight matrices only. Not: biases, norm scales, and what the model
    names (a ViT's position embedding and class token, the MAE decoder's mask token and positions)."""
    cfg = compose_config(*overrides)
    model = build_task(cfg, build_model(cfg.model, 10), BatchPrep(cfg.dataset)).model
    decayed, plain = build_optimizer(cfg.optimizer, model).param_groups
    names = {id(p): name for name, p in model.named_parameters()}
    decayed_names = {names[id(p)] for p in decayed["params"]}
    plain_names = {names[id(p)] for p in plain["params"]}
    assert undecayed <= plain_names and not undecayed & decayed_names
    assert plain_names == undecayed | {n for n, p in model.named_parameters() if p.ndim < 2}
    assert decayed_names and all(p.ndim >= 2 for p in decayed["params"])
