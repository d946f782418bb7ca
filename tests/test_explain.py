"""Attribution maps that would catch a wrong map, not just a written file: integrated gradients'
completeness, the model-randomisation sanity check (Adebayo et al., 2018) and a deletion test on
real digits; `mnist explain` end to end on tiny data."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from mnist_cli.data.batches import BatchPrep
from mnist_cli.data.datasets import load_split
from mnist_cli.evaluation.attribution import attribute

from conftest import BAD_INPUTS, FAST, REAL_DATA, fit, mnist, run_dirs, summary

SETTINGS = OmegaConf.create(
    {"method": "integrated_gradients", "ig_steps": 128, "occlusion_window": 4, "occlusion_stride": 2, "batch_size": 512}
)


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory: pytest.TempPathFactory):
    """A small CNN trained on real digits (mnist-10k, 2 epochs), 200 test images, their inputs."""
    if not REAL_DATA:
        pytest.skip("set MNIST_CLI_REAL_DATA to a folder with the real MNIST IDX files")
    _, _, model, _, cfg = fit(tmp_path_factory.mktemp("explain"), Path(REAL_DATA), "trainer.epochs=2")
    model.eval()
    test = load_split(cfg.dataset, "test").subset(torch.arange(200))
    prep = BatchPrep(cfg.dataset)
    return model, prep(test.images, train=False), test.labels, -cfg.dataset.mean / cfg.dataset.std


def maps_of(model, x, targets, black, method="integrated_gradients"):
    return attribute(model, x, targets, OmegaConf.merge(SETTINGS, {"method": method}), black)


def ranks(values: torch.Tensor) -> torch.Tensor:
    return values.flatten(1).argsort(1).argsort(1).float()


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's rank correlation of each pair of maps (ties broken by position)."""
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1))


@pytest.mark.real_data
def test_integrated_gradients_add_up_to_the_change_of_the_class_score(digits_model) -> None:
    model, x, _, black = digits_model
    targets = model(x).argmax(1)
    # The path's integral is a sum over steps: 1,024 bring every image within 1% (measured on the
    # first 50: at most 4.3% off with 64 steps, 1.7% with 128, 0.97% with 512)
    n = 25
    maps, deltas = attribute(model, x[:n], targets[:n], OmegaConf.merge(SETTINGS, {"ig_steps": 1024}), black)
    with torch.no_grad():
        at_input = model(x[:n]).gather(1, targets[:n, None])[:, 0]
        at_black = model(torch.full_like(x[:n], black)).gather(1, targets[:n, None])[:, 0]
    change = at_input - at_black
    assert ((maps.flatten(1).sum(1) - change).abs() <= 0.01 * change.abs()).all()
    assert (deltas.abs() <= 0.01 * change.abs()).all()  # Captum's convergence delta: within 1%


@pytest.mark.real_data
def test_maps_of_a_trained_and_a_random_model_differ(digits_model) -> None:
    model, x, _, black = digits_model
    randomized = copy.deepcopy(model)
    torch.manual_seed(1)
    for module in randomized.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    targets = model(x[:50]).argmax(1)
    trained, _ = maps_of(model, x[:50], targets, black)
    random, _ = maps_of(randomized, x[:50], targets, black)
    again, _ = maps_of(model, x[:50], targets, black)
    correlation = rank_correlation(trained.abs(), random.abs())
    # IG's maps are input x gradient, so both follow the ink a little (measured: about 0.4-0.5);
    # the trained model's maps of the same images, computed again, agree completely.
    print(f"rank correlation, trained vs random weights: mean {correlation.mean():.3f}")
    assert correlation.mean() < 0.6 and (rank_correlation(trained.abs(), again.abs()) > 0.999).all()


@pytest.mark.real_data
@pytest.mark.parametrize("method", ["integrated_gradients", "saliency", "occlusion", "gradcam"])
def test_deleting_the_top_tenth_of_the_map_hurts_more_than_a_random_tenth(digits_model, method: str) -> None:
    model, x, _, black = digits_model
    with torch.no_grad():
        targets = model(x).argmax(1)
    maps, _ = maps_of(model, x, targets, black, method)
    k = 78  # 10% of 784 pixels
    top = maps.flatten(1).topk(k, dim=1).indices
    random = torch.rand(len(x), 784, generator=torch.Generator().manual_seed(0)).topk(k, dim=1).indices

    def probability_after_deleting(pixels: torch.Tensor) -> torch.Tensor:
        deleted = x.flatten(1).clone().scatter_(1, pixels, black).reshape(x.shape)
        with torch.no_grad():
            return model(deleted).softmax(1).gather(1, targets[:, None])[:, 0]

    by_map, by_chance = probability_after_deleting(top).mean(), probability_after_deleting(random).mean()
    print(f"{method}: p(answer) after deleting the map's top 10%: {by_map:.3f}; a random 10%: {by_chance:.3f}")
    assert by_map < by_chance - 0.1


def write_digit_files(folder: Path, tiny_data: Path) -> None:
    folder.mkdir()
    from mnist_cli.config.compose import compose_config

    test = load_split(compose_config(f"dataset.root={tiny_data}", "dataset.download=false").dataset, "test")
    for i in range(3):
        Image.fromarray(test.images[i, 0].numpy()).resize((56, 56)).save(folder / f"d{i}.png")


@pytest.mark.slow
def test_mnist_explain_writes_maps_for_files_and_for_the_worst_test_images(tmp_path: Path, tiny_data: Path) -> None:
    done = mnist("pretrain", f"dataset.root={tiny_data}", *FAST, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [run] = run_dirs(tmp_path, "pretrain")
    assert summary(run)["val_nll_calibrated"] <= summary(run)["val_nll"]
    write_digit_files(tmp_path / "mine", tiny_data)
    done = mnist("explain", f"ckpt={run}", f"input={tmp_path / 'mine'}", "preprocess=resize", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [explained] = run_dirs(tmp_path, "explain")
    arrays = np.load(explained / "explanations.npz")
    assert arrays["maps"].shape == (3, 28, 28) and arrays["inputs"].dtype == np.uint8
    assert np.abs(arrays["convergence_deltas"]).max() < 0.05
    rows = list(csv.DictReader((explained / "explanations.csv").open()))
    assert [Path(r["file"]).name for r in rows] == ["d0.png", "d1.png", "d2.png"]
    assert (explained / "explanations.png").stat().st_size > 10_000

    done = mnist("explain", f"ckpt={run}", "explain.method=gradcam", "explain.images=5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((run_dirs(tmp_path, "explain")[1] / "explanations.csv").open()))
    assert len(rows) == 5
    ranked = [(r["true"] != r["label"], float(r["confidence"])) for r in rows]
    assert ranked == sorted(ranked, reverse=True)  # mistakes_first's order (tested on its own in test_evaluation)

    for bad, said in (
        (["input=nowhere/*.png"], "no image files there"),
        (["explain.method=shap"], "explain.method='shap' is not valid"),
        ([f"ckpt=[{run},{run}]"], "explain takes one checkpoint"),
    ):
        done = mnist("explain", f"ckpt={run}", *bad, cwd=tmp_path)
        assert done.returncode == 2 and said in done.stderr, done.stderr
        BAD_INPUTS.append((f"mnist explain {' '.join(bad)}", done.stderr.strip()))


@pytest.mark.slow
def test_eval_lists_the_worst_mistakes_and_maps_the_test_set_even_without_a_head(
    tmp_path: Path, tiny_data: Path
) -> None:
    done = mnist("pretrain", f"dataset.root={tiny_data}", *FAST, "optimizer.lr=1e-4", cwd=tmp_path)  # some mistakes
    assert done.returncode == 0, done.stderr
    done = mnist("eval", "ckpt=latest", "eval.worst_images=1000", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [evaluated] = run_dirs(tmp_path, "eval")
    measured = summary(evaluated)
    rows = list(csv.DictReader((evaluated / "confidently_wrong.csv").open()))
    assert len(rows) == round((1 - measured["test_acc"]) * measured["test_images"]) > 0  # every mistake, only those
    assert all(r["true"] != r["predicted"] for r in rows)
    assert [float(r["p_predicted"]) for r in rows] == sorted((float(r["p_predicted"]) for r in rows), reverse=True)
    assert measured["embedding"] == {"method": "pca", "file": "embedding.png", "points": measured["test_images"]}
    assert Image.open(evaluated / "embedding.png").size[0] > 400

    done = mnist("pretrain", f"dataset.root={tiny_data}", "objective=contrastive", *FAST, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = mnist("eval", "ckpt=latest", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    mapped = run_dirs(tmp_path, "eval")[1]
    assert summary(mapped)["objective"] == "contrastive" and (mapped / "embedding.png").is_file()
    assert "features only" in done.stdout

    shown = mnist("report", str(tmp_path / "outputs" / "eval"), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "confidently_wrong.csv embedding.png" in shown.stdout and "figures" in shown.stdout
