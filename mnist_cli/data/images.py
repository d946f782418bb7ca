"""Reading people's image files (PNG, JPEG, ... of any size or colour) and turning each into the
model's 28x28 input, light on dark as MNIST's (`preprocess(pixels, cfg)`, cfg.mode):
- mnist_like: the way MNIST's digits were made: cropped to the ink, scaled to fit a 20x20 box keeping
  its aspect, and placed in the 28x28 frame with its centre of mass at the centre;
- resize: for pictures that are not drawn strokes: the whole image padded to a square with its
  background and scaled to 28x28 (no cropping; a 28x28 image is kept as it is)."""

from __future__ import annotations

import glob
import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from omegaconf import DictConfig
from PIL import Image, ImageOps, UnidentifiedImageError

from mnist_cli.errors import UserError


class ImageTooLarge(UserError):
    """An image with more pixels than the caller allows."""


SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
SIZE = 28


def find_images(pattern: str) -> list[Path]:
    """An image file, a folder (its image files), or a glob pattern, in name order."""
    path = Path(pattern).expanduser()
    if path.is_dir():
        files = [p for p in path.iterdir() if p.suffix.lower() in SUFFIXES]
    elif path.is_file():
        files = [path]
    else:
        files = [Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file()]
    if not files:
        raise UserError(
            f"input={pattern}: no image files there; give an image, a folder of images or a glob such as 'digits/*.png'"
        )
    return sorted(files)


def load_grayscale(source: Path | bytes, max_pixels: int | None = None) -> np.ndarray:
    """The image (a file, or a file's bytes) as 2-D float pixels in [0, 255]; transparent parts
    count as white paper. `max_pixels`: refuse larger images before decoding them (a small
    compressed file can hold a huge image)."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            if max_pixels is not None and image.width * image.height > max_pixels:
                raise ImageTooLarge(
                    f"the image is {image.width}x{image.height} pixels, over the limit of {max_pixels:,}; send a smaller one"
                )
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                paper = Image.new("RGBA", image.size, "white")
                image = Image.alpha_composite(paper, image.convert("RGBA"))
            return np.asarray(image.convert("L"), dtype=np.float32)
    except UnidentifiedImageError:
        raise UserError("not a readable image (not a format Pillow knows, such as PNG or JPEG, or damaged)") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"not a readable image ({e.__class__.__name__}: {e})") from None


def paper_level(pixels: np.ndarray) -> float:
    """The median of the image's border: the level of the paper around the digit."""
    return float(np.median(np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])))


def preprocess(pixels: np.ndarray, cfg: DictConfig | SimpleNamespace) -> np.ndarray:
    """The model's 28x28 uint8 input from grayscale pixels, as cfg.mode says (module docstring).
    cfg.invert: auto (invert when the border is lighter than the middle grey) | true | false."""
    invert = paper_level(pixels) > 127 if cfg.invert == "auto" else bool(cfg.invert)
    light_on_dark = 255 - pixels if invert else pixels
    return to_mnist(light_on_dark, cfg) if cfg.mode == "mnist_like" else resized(light_on_dark)


def resized(pixels: np.ndarray) -> np.ndarray:
    """The whole image, padded to a square with its border's level and scaled to 28x28."""
    h, w = pixels.shape
    if (h, w) != (SIZE, SIZE):
        side = max(h, w)
        square = np.full((side, side), paper_level(pixels), dtype=np.float32)
        top, left = (side - h) // 2, (side - w) // 2
        square[top : top + h, left : left + w] = pixels
        pixels = np.asarray(Image.fromarray(square, mode="F").resize((SIZE, SIZE), Image.Resampling.LANCZOS))
    return pixels.clip(0, 255).round().astype(np.uint8)


def to_mnist(pixels: np.ndarray, cfg: DictConfig | SimpleNamespace) -> np.ndarray:
    """MNIST-style 28x28 uint8 digit from light-on-dark grayscale pixels (see the module docstring).

    cfg: threshold (share of the brightest ink that counts as the digit when cropping), digit_size
    (the box the digit is scaled into)."""
    ink = pixels.astype(np.float32)  # a copy
    ink -= paper_level(ink)  # the paper becomes 0
    ink = ink.clip(0, None)
    if ink.max() <= 0:
        raise UserError("the image is blank: no digit found")
    rows, cols = np.nonzero(ink > cfg.threshold * ink.max())
    digit = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    digit = digit * (255 / digit.max())
    h, w = digit.shape
    scale = cfg.digit_size / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resized = np.asarray(
        Image.fromarray(digit.astype(np.float32), mode="F").resize(size, Image.Resampling.LANCZOS)
    ).clip(0, 255)
    frame = np.zeros((SIZE, SIZE), dtype=np.float32)
    top, left = (SIZE - size[1]) // 2, (SIZE - size[0]) // 2
    frame[top : top + size[1], left : left + size[0]] = resized
    # Move the centre of mass to pixel (14, 14), where MNIST's digits have theirs (13.99, 14.01 on
    # average over its test set), in whole pixels; what leaves the frame is lost.
    ys, xs = np.indices(frame.shape)
    mass = frame.sum()
    dy, dx = round(SIZE / 2 - (ys * frame).sum() / mass), round(SIZE / 2 - (xs * frame).sum() / mass)
    moved = np.zeros_like(frame)
    moved[max(dy, 0) : SIZE + min(dy, 0), max(dx, 0) : SIZE + min(dx, 0)] = frame[
        max(-dy, 0) : SIZE + min(-dy, 0), max(-dx, 0) : SIZE + min(-dx, 0)
    ]
    return moved.round().astype(np.uint8)
