"""What `mnist eval` measures beyond accuracy, piece by piece: calibration, top-k, attacks,
corruptions and test-time augmentation (the command itself: tests/test_cli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from mnist_cli.data.batches import BatchPrep
from mnist_cli.data.datasets import load_split
from mnist_cli.evaluation.metrics import calibration, fit_temperature, mistakes_first, top_k_accuracy
from mnist_cli.evaluation.robustness import CORRUPTIONS, attacked_accuracy, corrupt, fgsm, pgd, tta_probabilities

from conftest import fit


def test_calibration_error_of_a_known_case() -> None:
    # 10 images at confidence 0.85 of which 6 are right (gap 0.25), 10 at 0.65 all right (gap 0.35):
    # ECE = 0.5 * 0.25 + 0.5 * 0.35.
    labels = torch.zeros(20, dtype=torch.long)
    probabilities = torch.zeros(20, 3)
    probabilities[:10] = torch.tensor([0.85, 0.1, 0.05])
    probabilities[6:10] = torch.tensor([0.1, 0.85, 0.05])  # wrong, as confident
    probabilities[10:] = torch.tensor([0.65, 0.25, 0.1])
    result = calibration(probabilities, labels, bins=10)
    assert result["ece"] == pytest.approx(0.3)
    by_bin = {round(b["low"], 1): b for b in result["bins"] if b["count"]}
    assert set(by_bin) == {0.6, 0.8}
    assert (by_bin[0.8]["count"], by_bin[0.8]["accuracy"], by_bin[0.8]["confidence"]) == (
        10,
        pytest.approx(0.6),
        pytest.approx(0.85),
    )
    assert (by_bin[0.6]["count"], by_bin[0.6]["accuracy"]) == (10, pytest.approx(1.0))
    # Confidence 1.0 counts in the last bin; a perfectly calibrated model scores 0.
    assert calibration(torch.eye(3), torch.arange(3), bins=5)["ece"] == pytest.approx(0.0)
    assert calibration(torch.eye(3), torch.arange(3), bins=5)["bins"][-1]["count"] == 3


def test_mistakes_come_first_the_most_confident_first_then_the_right_answers() -> None:
    probabilities = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.45, 0.55], [0.7, 0.3]])
    labels = torch.tensor([0, 1, 0, 1, 1])  # wrong: 1 (p 0.6), 2 (0.8), 4 (0.7); right: 0 (0.9), 3 (0.55)
    assert mistakes_first(probabilities, labels).tolist() == [2, 4, 1, 0, 3]


def test_top_k_accuracy() -> None:
    probabilities = torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6]])
    labels = torch.tensor([1, 1, 0])  # second choice, first choice, third choice
    assert top_k_accuracy(probabilities, labels, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(probabilities, labels, 2) == pytest.approx(2 / 3)
    assert top_k_accuracy(probabilities, labels, 3) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path):
    """A tiny one-conv-per-stage CNN trained on the tiny data (one that eps 0.1 attacks can fool),
    its forward on [0, 1] pixels, and the test split."""
    _, _, model, _, cfg = fit(tmp_path_factory.mktemp("eval"), tiny_data, "trainer.epochs=3", "model.convs=1")
    model.eval()
    prep = BatchPrep(cfg.dataset)
    test = load_split(cfg.dataset, "test")
    return (lambda x: model(prep.normalize(x))), test, cfg


def test_pgd_is_at_least_as_strong_as_fgsm_which_is_at_least_as_strong_as_clean(trained) -> None:
    forward, test, cfg = trained
    with torch.no_grad():
        clean = (forward(test.images.float() / 255).argmax(1) == test.labels).double().mean().item()
    attacks = OmegaConf.create(
        {
            "attack": ["fgsm", "pgd"],
            "eps": [0.1],
            "pgd_steps": 10,
            "pgd_step_size": None,
            "pgd_random_start": True,
            "pgd_seed": 0,
        }
    )
    found = attacked_accuracy(attacks, forward, test.images.float() / 255, test.labels, batch_size=64)
    assert found["pgd"]["0.1"] <= found["fgsm"]["0.1"] <= clean
    assert found["pgd"]["0.1"] < clean > 0.9  # the attack does something to a model that works

    x, y = test.images[:32].float() / 255, test.labels[:32]
    for adv in (fgsm(forward, x, y, 0.1), pgd(forward, x, y, 0.1, 5, 0.03, True, torch.Generator().manual_seed(0))):
        assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
        assert (adv - x).abs().max() > 0.05


def test_corruptions_are_seeded_bounded_and_change_the_images(trained) -> None:
    _, test, _ = trained
    cfg = OmegaConf.create(
        {"noise_std": 0.3, "blur_sigma": 1.0, "shift_pixels": 3, "rotate_degrees": 30, "contrast": 0.3}
    )
    x = test.images[:16].float() / 255
    for name in CORRUPTIONS:
        a = corrupt(name, x, cfg, torch.Generator().manual_seed(1))
        b = corrupt(name, x, cfg, torch.Generator().manual_seed(1))
        assert torch.equal(a, b), name
        assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1 and not torch.allclose(a, x), name
    # A shift moves each image's centre of mass by shift_pixels, each in its own direction.
    square = torch.zeros(16, 1, 28, 28)
    square[:, :, 10:18, 10:18] = 1.0
    moved = centre(corrupt("shift", square, cfg, torch.Generator().manual_seed(1))) - centre(square)
    assert moved.norm(dim=1) == pytest.approx(torch.full((16,), 3.0), abs=0.2)
    assert len({(round(dx), round(dy)) for dx, dy in moved.tolist()}) > 4


def centre(images: torch.Tensor) -> torch.Tensor:
    """(x, y) centre of mass of each image, in pixels."""
    at = torch.arange(images.shape[-1], dtype=images.dtype)
    mass = images.sum(dim=(1, 2, 3))
    return torch.stack([(images.sum(2)[:, 0] * at).sum(1) / mass, (images.sum(3)[:, 0] * at).sum(1) / mass], 1)


def test_tta_averages_probabilities_over_shifted_copies(trained) -> None:
    forward, test, _ = trained
    x = test.images[:8].float() / 255
    with torch.no_grad():
        averaged = tta_probabilities(forward, x, 1)
        plain = forward(x).softmax(1)
    assert averaged.sum(1) == pytest.approx(torch.ones(8))
    assert not torch.allclose(averaged, plain)


def test_the_fitted_temperature_undoes_over_and_under_confidence() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (2000,), generator=g)
    informative = torch.randn(2000, 10, generator=g) + 2.0 * F.one_hot(labels, 10)  # right ~2/3 of the time
    best = fit_temperature(informative, labels)
    for scale in (4.0, 0.25):  # made over-confident, and under-confident
        logits = informative * scale
        temperature = fit_temperature(logits, labels)
        assert temperature == pytest.approx(scale * best, rel=0.02)  # it undoes the scale
        assert F.cross_entropy(logits / temperature, labels) < F.cross_entropy(logits, labels) - 0.05
        assert torch.equal((logits / temperature).argmax(1), logits.argmax(1))  # no answer changes
