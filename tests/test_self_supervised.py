"""Self-supervised pretraining (contrastive, masked autoencoder): the losses, the views, no use of
labels, and the pretrain -> finetune path through the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mnist_cli.config.compose import compose_config
from mnist_cli.data.batches import BatchPrep
from mnist_cli.data.views import Views
from mnist_cli.models.classifier import classifier_state
from mnist_cli.objectives.contrastive import nt_xent
from mnist_cli.objectives.mae import patchify
from mnist_cli.training.checkpoint import load_checkpoint

from conftest import FAST, TINY_VIT, fit, metrics, mnist, run_dirs, summary


def test_nt_xent_rewards_matching_views() -> None:
    z = torch.randn(8, 16)
    matched, correct = nt_xent(z, z.clone(), temperature=0.1)
    unrelated, _ = nt_xent(z, torch.randn(8, 16), temperature=0.1)
    assert correct == 8 and matched < unrelated


def test_views_are_random_per_image_reproducible_and_normalized() -> None:
    cfg = compose_config("objective=contrastive")
    views = Views(BatchPrep(cfg.dataset), **cfg.objective.views)
    images = torch.full((4, 1, 28, 28), 128, dtype=torch.uint8)
    images[:, :, 8:20, 8:20] = 255
    a = views(images, torch.Generator().manual_seed(0))
    b = views(images, torch.Generator().manual_seed(0))
    assert a.shape == (4, 1, 28, 28) and torch.equal(a, b)
    assert not torch.equal(a[0], a[1])  # each image its own crop, rotation, blur and erasing
    assert a.max() <= (1 - cfg.dataset.mean) / cfg.dataset.std + 1e-5


OBJECTIVES = {"contrastive": ["objective=contrastive", *FAST], "mae": ["objective=mae", *TINY_VIT]}


def ssl_fit(tmp_path: Path, data: Path, objective: str, labels: str) -> dict[str, torch.Tensor]:
    # bf16 on any CPU (slow without native support), so a dtype mismatch shows on every machine
    _, run, *_ = fit(
        tmp_path / labels,
        data,
        *OBJECTIVES[objective],
        "trainer.epochs=1",
        "trainer.batch_size=32",
        "trainer.precision=bf16",
        shuffle_labels=labels == "shuffled",
    )
    return load_checkpoint(run.last_ckpt)["model"]


@pytest.mark.parametrize(("objective", "head"), [("contrastive", "projector."), ("mae", "decoder.")])
def test_self_supervised_training_uses_no_labels(tmp_path: Path, tiny_data: Path, objective: str, head: str) -> None:
    true, shuffled = (ssl_fit(tmp_path, tiny_data, objective, labels) for labels in ("true", "shuffled"))
    assert true.keys() == shuffled.keys() and any(k.startswith(head) for k in true)
    assert all(torch.equal(true[k], shuffled[k]) for k in true)  # the labels changed nothing


def test_patches_follow_the_vits_token_order() -> None:
    x = torch.arange(28 * 28.0).reshape(1, 1, 28, 28)
    patches = patchify(x, 7)
    assert patches.shape == (1, 16, 49)
    assert torch.equal(patches[0, 1], x[0, 0, :7, 7:14].flatten()) and torch.equal(
        patches[0, 4], x[0, 0, 7:14, :7].flatten()
    )


@pytest.mark.slow
def test_pretrain_without_labels_then_linear_probe_keeps_the_backbone(tmp_path: Path, tiny_data: Path) -> None:
    objective = "contrastive"  # the command-line path is the same for mae, which is tested in process above
    pretrain = mnist(
        "pretrain",
        *OBJECTIVES[objective],
        f"dataset.root={tiny_data}",
        "trainer.epochs=2",
        "trainer.min_steps=0",
        cwd=tmp_path,
    )
    assert pretrain.returncode == 0, pretrain.stderr
    [run] = run_dirs(tmp_path, "pretrain")
    rows = metrics(run)
    assert summary(run)["objective"] == objective and summary(run)["train_images"] == 243  # every training image
    assert all(0 <= row["val_acc"] <= 1 for row in rows) and len(rows) == 2  # the k-NN monitor
    assert load_checkpoint(run / "checkpoints" / "best.ckpt")["objective"] == objective

    probe = mnist(
        "finetune",
        f"ckpt={run}",
        "finetune.strategy=linear",
        "dataset.labels_per_class=5",
        "trainer.epochs=2",
        "trainer.min_steps=0",
        "trainer.batch_size=10",
        cwd=tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    [ft] = run_dirs(tmp_path, "finetune")
    assert summary(ft)["train_images"] == 50
    before = classifier_state(load_checkpoint(run / "checkpoints" / "best.ckpt")["model"])
    after = load_checkpoint(ft / "checkpoints" / "last.ckpt")["model"]
    assert after.keys() == before.keys()  # the projector or decoder was dropped
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("backbone."))
