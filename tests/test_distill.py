"""Knowledge distillation's loss, and adversarial training's batches (the trainer's two optional
ways of changing what a classifier learns from)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mnist_cli.config.compose import compose_config
from mnist_cli.data.batches import BatchPrep
from mnist_cli.models import build_model
from mnist_cli.objectives import build_task
from mnist_cli.objectives.distillation import distillation_loss

from conftest import FAST


def test_distillation_loss_mixes_labels_and_the_teachers_soft_targets() -> None:
    torch.manual_seed(0)
    student, teacher, labels = torch.randn(8, 10), torch.randn(8, 10), torch.randint(0, 10, (8,))
    assert distillation_loss(student, teacher, labels, 0.0, 4.0) == pytest.approx(
        F.cross_entropy(student, labels).item()
    )
    assert distillation_loss(teacher, teacher, labels, 1.0, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    # Learning from the soft targets moves the student's probabilities towards the teacher's.
    learner = student.clone().requires_grad_(True)
    distillation_loss(learner, teacher, labels, 1.0, 2.0).backward()
    moved = student - 0.5 * learner.grad
    kl = lambda s: F.kl_div(F.log_softmax(s / 2, 1), F.softmax(teacher / 2, 1), reduction="batchmean")  # noqa: E731
    assert kl(moved) < kl(student)


def test_adversarial_batches_stay_within_eps_and_leave_batchnorm_statistics_alone() -> None:
    cfg = compose_config(*FAST, "trainer.adversarial=pgd", "trainer.adversarial_eps=0.1", "trainer.adversarial_steps=3")
    prep = BatchPrep(cfg.dataset)
    model = build_model(cfg.model, 10).train()
    task = build_task(cfg, model, prep)
    images = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (16,))
    pixels = prep.pixels(images, train=False)
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    attacked = task.adversarial(pixels, labels, torch.Generator().manual_seed(0))
    change = (attacked - pixels).abs().max().item()
    assert 0.05 < change <= 0.1 + 1e-5 and attacked.min() >= 0 and attacked.max() <= 1
    assert model.training and all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())
    with torch.no_grad():
        model.eval()
        assert F.cross_entropy(model(prep.normalize(attacked)), labels) > F.cross_entropy(
            model(prep.normalize(pixels)), labels
        )
