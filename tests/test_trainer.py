"""The trainer, models, checkpoints and metrics, driven directly on tiny generated data."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from mnist_cli.config.compose import compose_config
from mnist_cli.data.datasets import load_split
from mnist_cli.data.split import Split, split_labels, train_val_split
from mnist_cli.errors import UserError
from mnist_cli.evaluation.inference import EvalResult
from mnist_cli.evaluation.metrics import classification_report
from mnist_cli.models import build_model
from mnist_cli.training.checkpoint import load_checkpoint, save_checkpoint
from mnist_cli.training.optim import build_optimizer
from mnist_cli.training.source import model_from_checkpoint
from mnist_cli.training.state import TrainState
from mnist_cli.training.trainer import Trainer

from conftest import FAST, TINY_VIT, accuracy_of, fit, keep_the_first_mid_epoch_checkpoint, untimed


def test_trainer_learns_and_writes_checkpoints_and_metrics(tmp_path: Path, tiny_data: Path) -> None:
    result, run, model, trainer, cfg = fit(tmp_path, tiny_data, "trainer.epochs=3")
    assert len(result.history) == 3 and result.best_val_acc >= 0.9
    assert len((run.path / "metrics.jsonl").read_text().splitlines()) == 3
    for key in ("train_loss", "val_acc", "lr", "epoch_time_s", "images_per_s"):
        assert key in result.history[-1]
    last = load_checkpoint(run.last_ckpt)  # weights_only=True inside
    assert last["epoch"] == 3 and "optimizer" in last and "rng" in last
    best = load_checkpoint(run.best_ckpt)
    assert best["epoch"] == result.best_epoch and "optimizer" not in best
    rebuilt = model_from_checkpoint(last)
    test = load_split(cfg.dataset, "test")
    assert accuracy_of(trainer, rebuilt, test) == accuracy_of(trainer, model, test)


@pytest.mark.parametrize("overrides", [FAST, ["model=resnet18", "model.stem=strided"]], ids=["cnn", "resnet18"])
def test_frozen_backbone_stays_bit_identical(tmp_path: Path, tiny_data: Path, overrides: list[str]) -> None:
    model = build_model(compose_config(*overrides).model, 10)
    model.freeze_backbone()
    backbone = copy.deepcopy(model.backbone.state_dict())  # weights and BatchNorm statistics
    head = copy.deepcopy(model.head.state_dict())
    fit(tmp_path, tiny_data, model=model)
    assert all(torch.equal(backbone[k], v) for k, v in model.backbone.state_dict().items())
    assert not all(torch.equal(head[k], v) for k, v in model.head.state_dict().items())


def test_early_stopping_stops_when_val_accuracy_stalls(tmp_path: Path, tiny_data: Path) -> None:
    result, *_ = fit(
        tmp_path, tiny_data, "trainer.epochs=6", "trainer.early_stopping_patience=1", "trainer.select=val_acc"
    )
    accs = [row["val_acc"] for row in result.history]
    first_at_top = accs.index(max(accs)) + 1
    assert result.stopped_early and len(result.history) == first_at_top + 1 < 6  # a tie is not progress
    assert result.best_epoch == len(accs) - accs[::-1].index(max(accs))  # but the later of tied epochs is kept


def test_nan_loss_stops_with_the_epoch_and_the_knob(tmp_path: Path, tiny_data: Path) -> None:
    with pytest.raises(UserError, match=r"became nan in epoch 1 .*lower optimizer\.lr"):
        fit(tmp_path, tiny_data, "optimizer=sgd", "optimizer.lr=1e30", "trainer.log_every_steps=1")


def test_head_replacement_keeps_the_backbone() -> None:
    model = build_model(compose_config(*FAST).model, 10)
    backbone = copy.deepcopy(model.backbone.state_dict())
    model.reset_head(3)
    assert model.eval()(torch.zeros(2, 1, 28, 28)).shape == (2, 3) and model.num_classes == 3
    assert all(torch.equal(backbone[k], v) for k, v in model.backbone.state_dict().items())


def test_checkpoints_are_refused_when_unsafe_truncated_or_foreign(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"format": "mnist-cli-checkpoint", "x": Payload()}, tmp_path / "evil.ckpt")
    with pytest.raises(UserError, match="refused: it holds Python objects"):
        load_checkpoint(tmp_path / "evil.ckpt")
    save_checkpoint(tmp_path / "good.ckpt", {"model": {"w": torch.ones(1000)}})
    (tmp_path / "cut.ckpt").write_bytes((tmp_path / "good.ckpt").read_bytes()[:500])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "cut.ckpt")
    torch.save({"weights": torch.ones(2)}, tmp_path / "other.ckpt")
    with pytest.raises(UserError, match="not an mnist checkpoint"):
        load_checkpoint(tmp_path / "other.ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.ckpt", "evil.ckpt", "good.ckpt", "other.ckpt"]


def test_classification_report_on_a_known_case() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    predictions = torch.tensor([0, 1, 1, 1, 2, 0])
    report = classification_report(predictions, labels, 3)
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert report["per_class"][0] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert report["per_class"][1]["precision"] == pytest.approx(2 / 3) and report["per_class"][1]["recall"] == 1.0


def test_precision_auto_picks_what_the_hardware_computes_natively() -> None:
    from mnist_cli.training.runtime import pick_precision

    native_bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert pick_precision("auto", torch.device("cpu")) == ("bf16" if native_bf16 else "fp32")
    assert pick_precision("fp16", torch.device("cpu")) == "fp16"


def test_compiled_training_saves_checkpoints_an_uncompiled_model_loads(tmp_path: Path, tiny_data: Path) -> None:
    result, run, model, trainer, cfg = fit(tmp_path, tiny_data, "trainer.epochs=1", "trainer.compile=true")
    ckpt = load_checkpoint(run.last_ckpt)
    assert not any(key.startswith("_orig_mod") for key in ckpt["model"])
    plain = model_from_checkpoint(ckpt)
    test = load_split(cfg.dataset, "test")
    assert accuracy_of(trainer, plain, test) == accuracy_of(trainer, model, test)


def test_few_labels_are_class_balanced_and_reproducible(tiny_data: Path) -> None:
    cfg = compose_config(f"dataset.root={tiny_data}")
    train = load_split(cfg.dataset, "train")
    (a, rest), (b, _) = (split_labels(train, 3, None, seed=0) for _ in range(2))
    assert torch.bincount(a.labels).tolist() == [3] * 10 and torch.equal(a.images, b.images)
    assert len(a) + len(rest) == len(train)
    assert not torch.equal(split_labels(train, 3, None, seed=1)[0].images, a.images)
    half, _ = split_labels(train, None, 0.5, seed=0)
    assert torch.equal(torch.bincount(half.labels), (torch.bincount(train.labels) / 2).round().long())
    everything, nothing = split_labels(train, None, None, seed=0)
    assert everything is train and len(nothing) == 0
    with pytest.raises(UserError, match="class 0 has only"):
        split_labels(train, 1000, None, seed=0)


@pytest.mark.parametrize("name", ["cnn", "resnet18", "vit"])
def test_partial_finetuning_trains_the_last_blocks_and_the_head_only(name: str) -> None:
    model = build_model(compose_config(f"model={name}").model, 10)
    model.freeze_backbone(train_last_blocks=1)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    last = {id(p) for module in model.blocks[-1] for p in module.parameters()}
    assert trainable == last | {id(p) for p in model.head.parameters()}
    model.train()
    assert all(m.training for m in model.blocks[-1]) and not model.blocks[0][0].training


def test_layer_decay_gives_earlier_blocks_smaller_learning_rates() -> None:
    cfg = compose_config("model=vit_mini")
    model = build_model(cfg.model, 10)
    optimizer = build_optimizer(cfg.optimizer, model, layer_decay=0.5)
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    depth = len(model.blocks)
    assert lr_of[id(model.head[-1].weight)] == cfg.optimizer.lr
    assert lr_of[id(model.blocks[-1][0].mlp[0].weight)] == cfg.optimizer.lr * 0.5
    assert (
        lr_of[id(model.backbone.patch_embed.weight)]
        == lr_of[id(model.backbone.pos_embed)]
        == cfg.optimizer.lr * 0.5**depth
    )
    assert len(lr_of) == sum(1 for _ in model.parameters())


# A model without batch-dependent layers (LayerNorm, no dropout) on unaugmented batches, in fp32:
# the gradient of a batch is then the mean of its micro-batches' gradients. SGD, whose step is
# linear in the gradient (Adam's first steps are near sign(gradient), which float noise flips for
# the weights whose gradient is close to 0).
NO_BATCH_EFFECTS = [
    *TINY_VIT,
    "model.dropout=0",
    "model.head_dropout=0",
    "dataset.augment.enabled=false",
    "trainer.precision=fp32",
    "trainer.epochs=3",
    "optimizer=sgd",
]


def test_accumulating_4_micro_batches_of_32_steps_like_one_batch_of_128(tmp_path: Path, tiny_data: Path) -> None:
    initial = build_model(compose_config(*NO_BATCH_EFFECTS).model, 10).state_dict()
    big, _, one, _, _ = fit(tmp_path / "one", tiny_data, *NO_BATCH_EFFECTS, "trainer.batch_size=128")
    acc, _, four, trainer, _ = fit(
        tmp_path / "four", tiny_data, *NO_BATCH_EFFECTS, "trainer.batch_size=32", "trainer.accumulate_steps=4"
    )
    assert trainer.effective_batch_size == 128 and trainer.length(243).steps_per_epoch == 1  # 3 optimizer steps in all
    a, b = one.state_dict(), four.state_dict()
    assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6) for k in a)
    assert not all(torch.allclose(a[k], initial[k], atol=1e-3) for k in a)  # training moved the weights
    assert [r["lr"] for r in big.history] == [r["lr"] for r in acc.history]
    assert [r["train_loss"] for r in big.history] == pytest.approx([r["train_loss"] for r in acc.history], rel=1e-5)


def test_accumulation_resumes_mid_epoch_bit_identically(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A last.ckpt written mid-epoch (after optimizer step 3 of 7, each of 2 micro-batches) resumes
    into the same weights and metrics as the run that was never stopped."""
    overrides = [
        "trainer.batch_size=16",
        "trainer.accumulate_steps=2",
        "trainer.checkpoint_every_steps=3",
        "trainer.epochs=2",
    ]
    saved = keep_the_first_mid_epoch_checkpoint(tmp_path, monkeypatch)
    whole, _, model, _, _ = fit(tmp_path / "whole", tiny_data, *overrides)
    monkeypatch.undo()
    ckpt = load_checkpoint(saved)
    assert (ckpt["epoch"], ckpt["in_progress"]["step"]) == (0, 3)
    resumed, _, again, _, _ = fit(tmp_path / "resumed", tiny_data, *overrides, resume=ckpt)
    assert untimed(whole.history) == untimed(resumed.history)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())


def rows(*measured: tuple[float, float]) -> list[dict]:
    return [{"epoch": i, "val_acc": acc, "val_loss": loss} for i, (acc, loss) in enumerate(measured, start=1)]


@pytest.mark.parametrize(
    ("select", "chosen"),
    [("last", 4), ("val_acc", 4), ("val_loss", 3)],
)
def test_best_checkpoint_rule(select: str, chosen: int) -> None:
    """On 500 validation images one image is 0.2%: epoch 2 wins on accuracy by one image, and ties
    with epoch 4. The default rule (last) takes the final epoch; val_acc takes the later of the
    tied ones; val_loss the lowest loss."""
    state = TrainState()
    picked = [state.record(row, select) for row in rows((0.990, 0.30), (0.994, 0.25), (0.992, 0.20), (0.994, 0.22))]
    assert state.best_epoch == chosen and picked[-1] == (chosen == 4)
    assert compose_config().trainer.select == "last"


def test_moving_average_is_validated_saved_and_resumed_bit_identically(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = ["trainer.ema=true", "trainer.ema_decay=0.9", "trainer.checkpoint_every_steps=3", "trainer.epochs=2"]
    saved = keep_the_first_mid_epoch_checkpoint(tmp_path, monkeypatch)
    whole, run, model, trainer, cfg = fit(tmp_path / "whole", tiny_data, *overrides)
    monkeypatch.undo()
    last, best = load_checkpoint(run.last_ckpt), load_checkpoint(run.best_ckpt)
    average = {k.removeprefix("module."): v for k, v in last["ema"].items() if k.startswith("module.")}
    assert best["selected_by"] == "last" and best["epoch"] == 2
    assert all(torch.equal(best["model"][k], v) for k, v in average.items())  # best.ckpt: the average
    assert not all(torch.equal(last["model"][k], v) for k, v in average.items())  # not the raw weights
    # the model rebuilt from best.ckpt (as eval does) measures what validation measured
    assert whole.history[-1]["val_acc"] == accuracy_of(trainer, model_from_checkpoint(best), whole_val(cfg))

    resumed, resumed_run, _, _, _ = fit(tmp_path / "resumed", tiny_data, *overrides, resume=load_checkpoint(saved))
    again = load_checkpoint(resumed_run.last_ckpt)
    assert all(torch.equal(v, again["ema"][k]) for k, v in last["ema"].items())
    assert all(torch.equal(v, again["model"][k]) for k, v in last["model"].items())
    assert [r["val_acc"] for r in whole.history] == [r["val_acc"] for r in resumed.history]


def whole_val(cfg) -> Split:
    return train_val_split(load_split(cfg.dataset, "train"), cfg.dataset.val_size, cfg.dataset.split_seed)[1]


def test_stop_at_target_ends_at_the_first_epoch_that_reaches_it(tmp_path: Path, tiny_data: Path) -> None:
    whole, *_ = fit(tmp_path / "whole", tiny_data, "trainer.epochs=5")
    accs = [row["val_acc"] for row in whole.history]
    target = max(accs)
    first = accs.index(target) + 1
    stopped, *_ = fit(
        tmp_path / "stopped",
        tiny_data,
        "trainer.epochs=5",
        f"trainer.target_accuracy={target}",
        "trainer.stop_at_target=true",
    )
    assert first < 5 and len(stopped.history) == first and stopped.stopped_at_target
    assert stopped.history[-1]["target_step"] == first * stopped.history[-1]["steps"]
    same = [{k: v for k, v in row.items() if k != "target_step"} for row in untimed(stopped.history)]
    assert same == untimed(whole.history[:first])  # the same epochs, then no more
    assert not whole.stopped_at_target


def test_checks_inside_the_epoch_stop_at_the_first_that_reaches_the_target(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """243 training images in batches of 32 are 7 steps an epoch; checks every 2 steps come at
    steps 2, 4 and 6 of each epoch, then the epoch's own validation. Scripted accuracies reach 0.9
    at the second epoch's second check: global step 7 + 4 = 11, where the run stops."""
    measured = iter([0.5, 0.7, 0.8, 0.6, 0.6, 0.95, 0.99, 0.99])  # epoch 1: 2, 4, 6, end; epoch 2: 2, 4, ...
    validate = Trainer.validate

    def scripted(self, model, train, split):
        result = validate(self, model, train, split)
        return EvalResult(result.loss, next(measured), result.predictions)

    monkeypatch.setattr(Trainer, "validate", scripted)
    checked = ["trainer.epochs=3", "trainer.target_accuracy=0.9", "trainer.check_every_steps=2"]
    stopped, *_ = fit(tmp_path / "stopped", tiny_data, *checked, "trainer.stop_at_target=true")
    assert stopped.stopped_at_target and len(stopped.history) == 2
    first, second = stopped.history
    assert "target_step" not in first and first["steps"] == 7 and first["val_acc"] == 0.6
    assert second["steps"] == 4 and second["target_step"] == 11 and second["val_acc"] == 0.95
    assert 0 < second["target_elapsed_s"] <= second["elapsed_s"]
    # without stop_at_target the run goes on, and the step of the first check that reached it is kept
    measured = iter([0.5, 0.7, 0.8, 0.6, 0.6, 0.95, 0.8, 0.99, 0.99, 0.99, 0.99, 0.99])
    whole, *_ = fit(tmp_path / "whole", tiny_data, *checked)
    assert not whole.stopped_at_target and [row["steps"] for row in whole.history] == [7, 7, 7]
    assert [row.get("target_step") for row in whole.history] == [None, 11, None]


def test_a_step_budget_sizes_the_run_and_ends_the_schedule(tmp_path: Path, tiny_data: Path) -> None:
    """243 training images in batches of 64 make 3 steps an epoch: 7 steps are 3 + 3 + 1."""
    result, run, _, trainer, _ = fit(tmp_path, tiny_data, "trainer.batch_size=64", "trainer.max_steps=7")
    length = trainer.length(243)
    assert (length.epochs, [length.steps_in(e) for e in (1, 2, 3)]) == (3, [3, 3, 1]) and len(result.history) == 3
    last = load_checkpoint(run.last_ckpt)
    assert last["scheduler"]["last_epoch"] == 7  # optimizer steps taken
    assert result.history[-1]["lr"] == pytest.approx(1e-2 / 25 / 1e4)  # onecycle's end, at the 7th step


def test_few_images_get_the_minimum_steps_and_many_keep_their_epochs() -> None:
    trainer = Trainer(compose_config().trainer, torch.device("cpu"), task=None)
    few = trainer.length(100)  # 100 images, batches of 128: one step an epoch
    assert few.steps_per_epoch == 1 and few.total_steps == few.epochs == compose_config().trainer.min_steps == 200
    many = trainer.length(57_000)
    assert (many.epochs, many.total_steps) == (compose_config().trainer.epochs, many.epochs * (57_000 // 128))
    budget = Trainer(compose_config("trainer.max_steps=50").trainer, torch.device("cpu"), task=None).length(100)
    assert budget.total_steps == 50  # a step budget is exact: no minimum on top


@pytest.mark.parametrize(("strategy", "lr"), [("full", 1e-3), ("linear", 3e-2), ("partial", 3e-3), ("lora", 3e-3)])
def test_each_finetune_strategy_brings_its_learning_rate(strategy: str, lr: float) -> None:
    model = build_model(compose_config().model, 10)
    cfg = compose_config("stage=finetune", f"finetune.strategy={strategy}")
    assert {group["lr"] for group in build_optimizer(cfg.optimizer, model).param_groups} == {lr}
    given = compose_config("stage=finetune", f"finetune.strategy={strategy}", "optimizer.lr=5e-3")
    assert {group["lr"] for group in build_optimizer(given.optimizer, model).param_groups} == {5e-3}
