"""Semi-supervised training (semi_supervised=fixmatch): which images are labeled, pooled and held
out; that the pool's labels never reach the loss; the confidence threshold; resuming mid-epoch;
the command line in pretrain and finetune."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from mnist_cli.config.compose import compose_config
from mnist_cli.data.batches import BatchPrep
from mnist_cli.data.split import Split
from mnist_cli.models import build_model
from mnist_cli.objectives.base import Batch
from mnist_cli.objectives.supervised import Supervised
from mnist_cli.semi_supervised.association import association_loss
from mnist_cli.semi_supervised.fixmatch import pseudo_label_loss
from mnist_cli.semi_supervised.pseudo_labels import PseudoLabeler, aligned, flexible_thresholds
from mnist_cli.stages.training import read_splits
from mnist_cli.targets import build
from mnist_cli.training.checkpoint import load_checkpoint

from conftest import fit, keep_the_first_mid_epoch_checkpoint, metrics, mnist, run_dirs, summary, untimed

# fixmatch sizes its runs in steps (trainer.max_steps); these tests give epochs instead, no minimum
FIXMATCH = [
    "semi_supervised=fixmatch",
    "dataset.labels_per_class=3",
    "semi_supervised.ratio=2",
    "trainer.max_steps=null",
    "trainer.min_steps=0",
]


def rows_of(images: torch.Tensor) -> set[bytes]:
    return {image.numpy().tobytes() for image in images}


def test_labeled_pool_and_validation_images_are_disjoint(tiny_data: Path) -> None:
    cfg = compose_config(f"dataset.root={tiny_data}", "dataset.download=false", *FIXMATCH)
    data = read_splits(cfg)
    labeled, pool, val = rows_of(data.train.images), rows_of(data.pool.images), rows_of(data.val.images)
    assert len(labeled) == data.labeled == 30 and torch.bincount(data.train.labels).unique().numel() == 1
    assert not labeled & pool and not labeled & val and not pool & val
    assert len(labeled) + len(pool) + len(val) == 256  # every training image is in one of them
    # an epoch is one pass over the pool (in expectation): the labeled images repeated to fill it
    assert len(data.train) >= len(data.pool) / 2 and len(data.train) % 30 == 0


def test_pool_labels_never_reach_the_loss(tmp_path: Path, tiny_data: Path) -> None:
    """With every pseudo-label taken (threshold 0), the pool's hidden labels shuffled give the same
    weights and losses; only the measured pseudo-label accuracy changes."""
    overrides = [*FIXMATCH, "semi_supervised.threshold=0.0"]
    a, _, model_a, _, _ = fit(tmp_path / "a", tiny_data, *overrides)
    b, _, model_b, _, _ = fit(tmp_path / "b", tiny_data, *overrides, shuffle_pool_labels=True)
    assert all(torch.equal(v, model_b.state_dict()[k]) for k, v in model_a.state_dict().items())
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    assert [r["pseudo_label_rate"] for r in a.history] == [1.0, 1.0]
    assert [r["pseudo_label_acc"] for r in a.history] != [r["pseudo_label_acc"] for r in b.history]


def test_the_threshold_takes_only_confident_pseudo_labels() -> None:
    weak = torch.tensor([[5.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 9.0]]).softmax(1)  # top: .99, .45, 1.0
    labeler = PseudoLabeler(3, torch.full((3,), 1 / 3), 0.95, "fixed", alignment=False, momentum=0.0)
    pseudo, taken = labeler(weak, torch.arange(3))
    assert pseudo.tolist() == [0, 1, 2] and taken.tolist() == [True, False, True]
    strong = torch.zeros(3, 3, requires_grad=True)
    loss = pseudo_label_loss(strong, pseudo, taken)
    loss.backward()
    assert strong.grad[1].abs().sum() == 0 and strong.grad[0].abs().sum() > 0 and strong.grad[2].abs().sum() > 0
    assert loss.item() == pytest.approx(2 * torch.log(torch.tensor(3.0)).item() / 3)  # uniform guesses, mean over 3
    assert pseudo_label_loss(strong, pseudo, torch.zeros(3, dtype=torch.bool)).item() == 0


def test_flexible_thresholds_are_lower_for_the_classes_learned_less() -> None:
    """Pool images last confidently predicted as class 0: 60, class 1: 20, class 2: none, 20 not
    yet: class 0 keeps the full threshold, the others get lower ones, class 2 the lowest."""
    learned = torch.tensor([0] * 60 + [1] * 20 + [-1] * 20)
    thresholds = flexible_thresholds(learned, 3, 0.9)
    assert thresholds[0] == pytest.approx(0.9) and 0 == thresholds[2] < thresholds[1] < thresholds[0]
    labeler = PseudoLabeler(100, torch.full((3,), 1 / 3), 0.9, "flexible", alignment=False, momentum=0.0)
    labeler.learned = learned.clone()
    sure_of_1, sure_of_0 = torch.tensor([[0.1, 0.8, 0.1]]), torch.tensor([[0.8, 0.1, 0.1]])
    assert labeler(sure_of_1, torch.tensor([99]))[1].item() and not labeler(sure_of_0, torch.tensor([98]))[1].item()


def test_alignment_gives_an_over_predicted_class_fewer_pseudo_labels() -> None:
    """The pool's predictions have run at 60% class 0 against a third of the labels: class 0's
    probabilities are scaled down, the others' up, and fewer images take class 0."""
    torch.manual_seed(0)
    probabilities = torch.softmax(torch.randn(1000, 3) * 3 + torch.tensor([1.0, 0.0, 0.0]), 1)
    running = torch.tensor([0.6, 0.2, 0.2])
    target = torch.full((3,), 1 / 3)
    before = (probabilities.argmax(1) == 0).sum()
    after = (aligned(probabilities, target, running).argmax(1) == 0).sum()
    assert after < before and torch.allclose(aligned(probabilities, target, running).sum(1), torch.ones(1000))
    labeler = PseudoLabeler(1000, target, 0.5, "fixed", alignment=True, momentum=0.0)  # running = this batch's mean
    pseudo, taken = labeler(probabilities, torch.arange(1000))
    assert (pseudo[taken] == 0).sum() < ((probabilities.max(1).values >= 0.5) & (probabilities.argmax(1) == 0)).sum()


def fixmatch_on_even_labels(*overrides: str):
    """semi_supervised=fixmatch (with `overrides`) over 100 images, 10 of each class."""
    cfg = compose_config("semi_supervised=fixmatch", "dataset.labels_per_class=10", *overrides)
    prep = BatchPrep(cfg.dataset)
    labeled = Split(torch.zeros(100, 1, 28, 28, dtype=torch.uint8), torch.arange(100) % 10)
    supervised = Supervised("supervised", build_model(cfg.model, 10), prep, cfg.trainer)
    return build(cfg.semi_supervised, task=supervised, prep=prep, pool=labeled, labeled=labeled)


def test_a_collapse_onto_one_class_is_warned_of() -> None:
    fixmatch = fixmatch_on_even_labels()
    even = {"pool_images": 1000.0, "pseudo_labels": [90.0] * 10, "pseudo_labels_right": [80.0] * 10}
    assert fixmatch.epoch_metrics(even)["pseudo_label_drift"] == pytest.approx(0.0, abs=1e-6)
    assert fixmatch.epoch_warnings(fixmatch.epoch_metrics(even)) == []
    collapsed = {**even, "pseudo_labels": [90.0] * 3 + [400.0] + [90.0] * 6}  # class 3: 400 of 1210
    metrics = fixmatch.epoch_metrics(collapsed)
    assert metrics["pseudo_label_share"][3] == pytest.approx(0.3306, abs=1e-4) and metrics["pseudo_label_drift"] > 2
    [warning] = fixmatch.epoch_warnings(metrics)
    assert "class 3 has 33.1% of them against 10.0% of the labeled images" in warning
    assert "alignment=true" not in warning  # on already (the group's default): no advice to turn it on
    [unaligned] = fixmatch_on_even_labels("semi_supervised.alignment=false").epoch_warnings(metrics)
    assert "semi_supervised.alignment=true holds the shares" in unaligned


class Answers(nn.Module):
    """Always answers `digit`, surely; records whether it was called in training mode."""

    def __init__(self, digit: int):
        super().__init__()
        self.digit, self.modes = digit, []
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return torch.nn.functional.one_hot(torch.full((len(x),), self.digit), 10).float() * 20 * self.scale


def test_the_association_walk_ends_in_the_class_it_started_from() -> None:
    """Pool images that sit with their class's labeled images make a short, sure round trip (low
    walker loss); pool images halfway between classes do not. The visit loss is least when the
    walk lands on every pool image equally."""
    labels = torch.tensor([0, 0, 1, 1])
    labeled = torch.tensor([[4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [0.0, 4.0]])
    grouped = torch.tensor([[4.0, 0.0], [0.0, 4.0]])
    between = torch.tensor([[2.0, 2.0], [2.0, 2.0]])
    # the least a walker loss can be: the trip ends spread over the class's two labeled images
    assert association_loss(labeled, grouped, labels, 0.0) == pytest.approx(math.log(2), abs=1e-4)
    assert association_loss(labeled, between, labels, 0.0) == pytest.approx(math.log(4), abs=1e-4)  # anywhere
    # every labeled image visits both pool images equally: log(2), the least a pool of two allows
    assert association_loss(labeled, between, labels, 1.0) - association_loss(labeled, between, labels, 0.0) == (
        pytest.approx(math.log(2), abs=1e-4)
    )
    lopsided = torch.tensor([[4.0, 4.0], [-4.0, -4.0]])  # everything walks to the first
    visit = association_loss(labeled, lopsided, labels, 1.0) - association_loss(labeled, lopsided, labels, 0.0)
    assert visit > math.log(2) + 1


def test_the_walk_starts_from_every_label_or_a_seeded_sample_of_them() -> None:
    def batch(seed: int) -> Batch:
        return Batch(
            torch.zeros(8, 1, 28, 28, dtype=torch.uint8),
            torch.zeros(8, dtype=torch.long),
            torch.Generator().manual_seed(seed),
        )

    inputs, labels = fixmatch_on_even_labels("semi_supervised.walk_labels=500").walkers(batch(0))
    assert inputs.shape == (100, 1, 28, 28) and torch.equal(labels, torch.arange(100) % 10)  # all 100, in order
    sampled = fixmatch_on_even_labels("semi_supervised.walk_labels=30")
    first, again, other = (sampled.walkers(batch(seed))[1] for seed in (1, 1, 2))
    assert len(first) == 30 and torch.equal(first, again) and not torch.equal(first, other)
    inputs, _ = fixmatch_on_even_labels("semi_supervised.walk_labels=0").walkers(batch(0))
    assert len(inputs) == 0  # the step's own labeled batch is the walk's


@pytest.mark.parametrize(("teacher", "right"), [("model", 0), ("average", 16)])
def test_the_teacher_gives_the_pseudo_labels(teacher: str, right: int) -> None:
    """teacher=model: the weights being trained label the pool (here: all wrong); teacher=average:
    the moving average does (all right), called in eval mode and left in training mode."""
    cfg = compose_config(
        "semi_supervised=fixmatch",
        "semi_supervised.ratio=2",
        f"semi_supervised.teacher={teacher}",
        "semi_supervised.association=0",  # these stand-in models have no backbone to walk through
    )
    prep = BatchPrep(cfg.dataset)
    pool = Split(torch.zeros(20, 1, 28, 28, dtype=torch.uint8), torch.full((20,), 3))
    supervised = Supervised("supervised", build_model(cfg.model, 10), prep, cfg.trainer)
    labeled_images = Split(torch.zeros(10, 1, 28, 28, dtype=torch.uint8), torch.arange(10))
    fixmatch = build(cfg.semi_supervised, task=supervised, prep=prep, pool=pool, labeled=labeled_images)
    student, average = Answers(5), Answers(3)
    labeled = Batch(torch.zeros(8, 1, 28, 28, dtype=torch.uint8), torch.zeros(8, dtype=torch.long), torch.Generator())
    labeled.average = average.train()
    fixmatch.loss(student, labeled)
    counts = fixmatch.tallies()
    taken, right_ones = counts["pseudo_labels"], counts["pseudo_labels_right"]
    assert (counts["pool_images"], taken.sum(), right_ones.sum()) == (16, 16, right)
    assert taken[3 if teacher == "average" else 5] == 16  # counted under the class they were given
    assert average.modes == ([False] if teacher == "average" else []) and average.training


@pytest.mark.parametrize(
    "labelling",
    [
        ["semi_supervised.threshold=0.0", "semi_supervised.thresholds=fixed", "semi_supervised.alignment=false"],
        ["semi_supervised.thresholds=flexible", "semi_supervised.alignment=true"],
    ],
    ids=["fixed", "flexible-aligned"],
)
def test_fixmatch_resumes_mid_epoch_bit_identically(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch, labelling: list[str]
) -> None:
    """The pool images each step draws, the epoch's pseudo-label counts, and what the pseudo-labeller
    keeps (each pool image's last confident class, the predictions' running shares) are in the checkpoint."""
    overrides = [*FIXMATCH, *labelling, "semi_supervised.alignment_momentum=0.9", "trainer.batch_size=8"]
    overrides += ["trainer.checkpoint_every_steps=3"]
    saved = keep_the_first_mid_epoch_checkpoint(tmp_path, monkeypatch)
    whole, _, model, _, _ = fit(tmp_path / "whole", tiny_data, *overrides)
    monkeypatch.undo()
    ckpt = load_checkpoint(saved)
    tallies = ckpt["in_progress"]["tallies"]
    assert ckpt["in_progress"]["step"] == 3 and set(tallies) == {"pool_images", "pseudo_labels", "pseudo_labels_right"}
    assert tallies["pool_images"] == 3 * 8 * 2 and tallies["pseudo_labels"].shape == (10,)  # 3 steps, batch 8, ratio 2
    assert set(ckpt["task"]) == {"running", "learned"} and len(ckpt["task"]["learned"]) == 256 - 30 - 13
    resumed, _, again, _, _ = fit(tmp_path / "resumed", tiny_data, *overrides, resume=ckpt)
    assert untimed(whole.history) == untimed(resumed.history)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())


def test_fixmatch_with_a_step_budget_resumes_bit_identically(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 steps of 15 an epoch: the second epoch ends after 5 steps; stopped at step 3, the run
    continues to the same weights, metrics and step count."""
    overrides = [*FIXMATCH, "trainer.batch_size=8", "trainer.max_steps=20", "trainer.checkpoint_every_steps=3"]
    saved = keep_the_first_mid_epoch_checkpoint(tmp_path, monkeypatch)
    whole, run, model, _, _ = fit(tmp_path / "whole", tiny_data, *overrides)
    monkeypatch.undo()
    assert len(whole.history) == 2 and load_checkpoint(run.last_ckpt)["scheduler"]["last_epoch"] == 20
    resumed, resumed_run, again, _, _ = fit(tmp_path / "resumed", tiny_data, *overrides, resume=load_checkpoint(saved))
    assert untimed(whole.history) == untimed(resumed.history)
    assert load_checkpoint(resumed_run.last_ckpt)["scheduler"]["last_epoch"] == 20
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())


@pytest.mark.slow
def test_fixmatch_from_the_command_line_in_pretrain_and_finetune(tmp_path: Path, tiny_data: Path) -> None:
    common = [f"dataset.root={tiny_data}", "dataset.download=false", *FIXMATCH, "trainer.epochs=2"]
    small = ["trainer.batch_size=16", "model.channels=[8,16]", "model.hidden=32"]
    assert mnist("pretrain", *common, *small, cwd=tmp_path).returncode == 0
    [pretrained] = run_dirs(tmp_path, "pretrain")
    assert mnist("finetune", f"ckpt={pretrained}", *common, cwd=tmp_path).returncode == 0
    [finetuned] = run_dirs(tmp_path, "finetune")
    for run in (pretrained, finetuned):
        done = summary(run)
        assert done["status"] == "completed" and done["semi_supervised"] == "fixmatch"
        assert (done["train_images"], done["unlabeled_images"]) == (30, 256 - 13 - 30)  # 13: 5% validation
        rows = metrics(run)
        assert len(rows) == 2 and all(0 <= row["pseudo_label_rate"] <= 1 for row in rows)
        assert all(len(row["pseudo_label_share"]) == len(row["pseudo_label_acc_per_class"]) == 10 for row in rows)
        assert all(row["pseudo_label_drift"] >= 0 for row in rows)
        assert "pseudo_label_rate" in (run / "metrics.csv").read_text().splitlines()[0]
    reported = mnist("report", str(pretrained), str(finetuned), "--out", str(tmp_path / "report"), cwd=tmp_path)
    assert reported.returncode == 0 and (tmp_path / "report" / "pseudo_labels.png").is_file(), reported.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["semi_supervised=fixmatch"], "there are none: keep a few labels with dataset.labels_per_class=10"),
        (["semi_supervised=fixmatch", "objective=contrastive"], "pretrain with one, then `mnist finetune"),
        ([*FIXMATCH, "semi_supervised.threshold=2"], "semi_supervised.threshold=2 is not valid"),
        ([*FIXMATCH, "semi_supervised.teacher=average", "trainer.ema=false"], "add trainer.ema=true"),
        (["semi_supervised=fixmatch", "dataset.label_fraction=1.0"], "has no unlabeled image to learn from"),
        (["semi_supervised=fixmatch", "dataset.labels_per_class=100"], "class 0 has only 24 training images"),
        (
            [*FIXMATCH, "objective=mae", "model=vit_mini"],
            "semi_supervised=fixmatch learns from labels and unlabeled images, objective=mae from no labels",
        ),
        ([*FIXMATCH, "semi_supervised.thresholds=adaptive"], "semi_supervised.thresholds='adaptive' is not valid"),
        ([*FIXMATCH, "dataset.labeled=picks.csv"], "set only one of dataset.labels_per_class, dataset.labeled"),
    ],
)
def test_fixmatch_config_mistakes_are_one_line_errors(
    tmp_path: Path, tiny_data: Path, overrides: list[str], message: str
) -> None:
    result = mnist("pretrain", f"dataset.root={tiny_data}", "dataset.download=false", *overrides, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
