"""Exported files (ONNX, TorchScript, int8) reproduce the PyTorch model and record their
preprocessing; pruning zeroes the asked share (the command itself: tests/test_cli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from mnist_cli.data.batches import BatchPrep
from mnist_cli.data.datasets import load_split
from mnist_cli.deploy import export
from mnist_cli.evaluation.inference import outputs

from conftest import fit


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path):
    """A tiny trained CNN, the normalized test images and labels, and its preprocessing record."""
    _, _, model, _, cfg = fit(tmp_path_factory.mktemp("export"), tiny_data, "trainer.epochs=3")
    test = load_split(cfg.dataset, "test")
    images = BatchPrep(cfg.dataset, channels_last=False)(test.images, train=False)
    return model.eval(), images, test.labels, export.preprocessing(cfg.dataset)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_file_matches_pytorch_and_records_its_preprocessing(trained, tmp_path: Path, fmt: str) -> None:
    model, images, _, info = trained
    path = tmp_path / f"model.{fmt}"
    predict = export.export(model, fmt, path, images[:2], info, opset=18)
    with torch.no_grad():
        expected = model(images)
    got = outputs(predict, images, 50)  # batch sizes other than the example's
    assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-4)
    _, recorded = (export.load_onnx if fmt == "onnx" else export.load_torchscript)(path)
    assert recorded["mean"] == pytest.approx(0.1307) and recorded["std"] == pytest.approx(0.3081)
    assert recorded["classes"] == [str(i) for i in range(10)]


def test_int8_file_is_smaller_and_within_one_point_of_float32(trained, tmp_path: Path) -> None:
    model, images, labels, info = trained
    export.export(model, "torchscript", tmp_path / "fp32.pt", images[:2], info, opset=18)
    predict = export.export(model, "int8", tmp_path / "int8.pt", images[:2], info, opset=18)
    assert (tmp_path / "int8.pt").stat().st_size < 0.7 * (tmp_path / "fp32.pt").stat().st_size
    with torch.no_grad():
        fp32 = (model(images).argmax(1) == labels).double().mean().item()
    int8 = (outputs(predict, images, 64).argmax(1) == labels).double().mean().item()
    assert abs(int8 - fp32) <= 0.01 and fp32 > 0.9


def test_pruning_zeroes_the_smallest_share_of_the_weights() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    weights = torch.cat([model[0].weight.flatten(), model[2].weight.flatten()])
    zeroed = export.prune_weights(model, 0.5)
    assert zeroed == weights.numel() // 2
    kept = torch.cat([model[0].weight.flatten(), model[2].weight.flatten()])
    assert kept[kept != 0].abs().min() >= weights.abs().median()  # the small ones went
    assert not hasattr(model[2], "weight_orig")  # permanent: a plain model again
