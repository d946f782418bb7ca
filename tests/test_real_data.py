"""The default CNN recipe on real MNIST (the first 10k training images and the full test set).
Runs only where MNIST_CLI_REAL_DATA names a folder with the four IDX files (.ci/run sets it)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import REAL_DATA, mnist, run_dirs, summary

pytestmark = [
    pytest.mark.real_data,
    pytest.mark.slow,
    pytest.mark.skipif(not REAL_DATA, reason="set MNIST_CLI_REAL_DATA to a folder with the real MNIST IDX files"),
]


def test_default_cnn_recipe_reaches_98_8_percent_and_eval_agrees(real_run: Path, tmp_path: Path) -> None:
    run = real_run
    recorded = summary(run)
    print(
        f"test accuracy {recorded['test_acc']:.4f}, {recorded['images_per_s']:.0f} images/s, {recorded['wall_time_s']:.1f} s"
    )
    assert recorded["test_acc"] >= 0.988

    # The temperature fitted on the validation split lowers its NLL, and the test set's ECE.
    assert recorded["val_nll_calibrated"] < recorded["val_nll"]
    evaluate = mnist("eval", f"ckpt={run}", cwd=tmp_path)
    assert evaluate.returncode == 0, evaluate.stderr
    [eval_run] = run_dirs(tmp_path, "eval")
    measured = json.loads((eval_run / "eval.json").read_text())
    assert measured["test_acc"] == recorded["test_acc"] and measured["temperature"] == recorded["temperature"]
    assert measured["ece"] < measured["ece_uncalibrated"]
    print(
        f"temperature {recorded['temperature']}: test ECE {measured['ece_uncalibrated']:.4f} -> {measured['ece']:.4f}"
    )
    raw = mnist("eval", f"ckpt={run}", "calibrate=false", cwd=tmp_path)
    assert raw.returncode == 0, raw.stderr
    unscaled = json.loads((run_dirs(tmp_path, "eval")[1] / "eval.json").read_text())
    assert unscaled["ece"] == measured["ece_uncalibrated"] and "temperature" not in unscaled

    # Digits drawn on white paper (any size, colour, format) get their labels; a broken file is
    # reported on its row and the others are still predicted.
    truth = draw_digits(tmp_path / "digits")
    predict = mnist("predict", f"ckpt={run}", f"input={tmp_path / 'digits'}", cwd=tmp_path)
    assert predict.returncode == 0, predict.stderr
    [predict_run] = run_dirs(tmp_path, "predict")
    with open(predict_run / "predictions.csv") as f:
        rows = {Path(row["file"]).name: row for row in csv.DictReader(f)}
    assert {name: rows[name]["label"] for name in truth} == truth
    assert rows["notes.png"]["label"] == "" and "not a readable image" in rows["notes.png"]["error"]
    assert "unreadable" in predict.stdout


def draw_digits(folder: Path) -> dict[str, str]:
    """Digits drawn in black on white paper of different sizes and formats, as a person might
    photograph or draw them, and a file that is no image: {file name: its true label}."""
    from PIL import Image, ImageDraw

    folder.mkdir()
    strokes = {
        "one.png": ((300, 400), [("line", [(150, 60), (160, 340)])]),
        "seven.png": ((320, 380), [("line", [(70, 80), (240, 80)]), ("line", [(240, 80), (120, 330)])]),
        "zero.jpg": ((280, 360), [("ellipse", [(60, 50), (220, 310)])]),
    }
    for name, (size, shapes) in strokes.items():
        image = Image.new("RGB", size, (250, 248, 240))  # off-white paper
        draw = ImageDraw.Draw(image)
        for kind, points in shapes:
            getattr(draw, kind)(points, **({"fill": "black"} if kind == "line" else {"outline": "black"}), width=30)
        image.save(folder / name)
    (folder / "notes.png").write_text("not an image")
    return {"one.png": "1", "seven.png": "7", "zero.jpg": "0"}


def test_mnist_written_as_png_folders_reads_back_as_the_idx_images(tmp_path: Path) -> None:
    """The 10,000 test images as a PNG folder tree: preprocess=resize gives exactly the IDX
    tensors; the MNIST-style preprocessing (crop to the ink, fit in 20x20, centre the mass) redoes
    what MNIST's makers did, and moves an MNIST image only by rounding: measured here."""
    import torch
    from PIL import Image

    from mnist_cli.config.compose import compose_config
    from mnist_cli.data.datasets import load_dataset
    from mnist_cli.data.idx_files import read_split

    idx = read_split(compose_config(f"dataset.root={REAL_DATA}", "dataset.download=false").dataset, "test")
    for i, (image, label) in enumerate(zip(idx.images[:, 0].numpy(), idx.labels.tolist())):
        folder = tmp_path / "tree" / "test" / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:05d}.png")
    by_class = torch.cat([(idx.labels == c).nonzero().flatten() for c in range(10)])  # the tree's order
    expected = idx.images[by_class].float()
    digits = "[" + ",".join(f"'{c}'" for c in range(10)) + "]"

    def read(mode: str) -> torch.Tensor:
        cfg = compose_config(
            "dataset=folder", f"dataset.root={tmp_path / 'tree'}", f"dataset.classes={digits}", f"preprocess={mode}"
        )
        test = load_dataset(cfg.dataset, cfg.preprocess).test
        assert torch.equal(test.labels, idx.labels[by_class])
        return test.images.float()

    assert torch.equal(read("resize"), expected)
    moved = read("mnist_like")
    rows = torch.arange(28.0)

    def centre(x: torch.Tensor) -> torch.Tensor:
        mass = x[:, 0].sum((1, 2))
        return torch.stack([(x[:, 0].sum(2) * rows).sum(1) / mass, (x[:, 0].sum(1) * rows).sum(1) / mass], 1)

    unchanged = float((moved == expected).flatten(1).all(1).double().mean())
    mean_diff = float((moved - expected).abs().mean())
    shift = float((centre(moved) - centre(expected)).norm(dim=1).mean())
    print(
        f"mnist_like on MNIST: {unchanged:.1%} unchanged, mean |diff| {mean_diff:.3f} of 255, centre moved {shift:.3f} px"
    )
    assert unchanged > 0.5 and mean_diff < 0.5 and shift < 0.05
