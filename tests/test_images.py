"""Turning people's images into MNIST-style 28x28 digits (mnist_cli/images.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from mnist_cli.data.images import find_images, load_grayscale, preprocess
from mnist_cli.errors import UserError

CFG = OmegaConf.create({"mode": "mnist_like", "invert": "auto", "threshold": 0.2, "digit_size": 20})


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    ys, xs = np.indices(image.shape)
    return float((ys * image).sum() / image.sum()), float((xs * image).sum() / image.sum())


def test_dark_ink_on_paper_becomes_a_centred_light_digit_in_a_20_pixel_box() -> None:
    paper = np.full((300, 200), 235, dtype=np.float32)
    paper[40:260, 20:60] = 10  # a tall bar near the left edge
    digit = preprocess(paper, CFG)
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    rows, cols = np.nonzero(digit > 50)
    assert rows.max() - rows.min() + 1 == 20 and cols.max() - cols.min() + 1 <= 5  # aspect kept: 220 x 40 -> 20 x 4
    assert centre_of_mass(digit) == pytest.approx((13.5, 13.5), abs=0.5)
    assert digit.max() == 255 and digit[0].max() == 0  # ink is bright, the paper black


def test_light_ink_on_black_is_kept_and_invert_can_be_forced() -> None:
    dark = np.zeros((50, 50), dtype=np.float32)
    dark[10:40, 20:30] = 200
    kept = preprocess(dark, CFG)
    assert kept[14, 14] > 100 and kept[0, 0] == 0
    assert np.array_equal(preprocess(dark, OmegaConf.merge(CFG, {"invert": False})), kept)
    with pytest.raises(
        UserError, match="blank"
    ):  # inverted, the bar is dark ink on white: nothing is brighter than the paper
        preprocess(dark, OmegaConf.merge(CFG, {"invert": True}))


def test_blank_images_and_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="blank"):
        preprocess(np.full((40, 40), 255, dtype=np.float32), CFG)
    (tmp_path / "a.png").write_text("not an image")
    with pytest.raises(UserError, match="not a readable image"):
        load_grayscale(tmp_path / "a.png")


def test_transparent_backgrounds_count_as_paper_and_inputs_are_found_by_folder_or_glob(tmp_path: Path) -> None:
    image = Image.new("RGBA", (60, 60), (0, 0, 0, 0))  # transparent black
    image.paste((0, 0, 0, 255), (25, 10, 35, 50))  # an opaque black bar
    image.save(tmp_path / "b.png")
    Image.new("L", (40, 30), 128).save(tmp_path / "c.jpg")
    pixels = load_grayscale(tmp_path / "b.png")
    assert pixels[0, 0] == 255 and pixels[30, 30] == 0
    assert [p.name for p in find_images(str(tmp_path))] == ["b.png", "c.jpg"]
    assert [p.name for p in find_images(str(tmp_path / "*.jpg"))] == ["c.jpg"]
    with pytest.raises(UserError, match="no image files there"):
        find_images(str(tmp_path / "*.gif"))
