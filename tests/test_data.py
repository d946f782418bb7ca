"""Reading IDX files in both layouts, refusing bad ones, and the seeded validation split."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from mnist_cli.config.compose import compose_config
from mnist_cli.data.batches import BatchPrep, smoothed
from mnist_cli.data.idx import read_idx, write_idx
from mnist_cli.data.idx_files import read_split
from mnist_cli.data.split import train_val_split
from mnist_cli.errors import UserError

from conftest import write_dataset

MNIST_CFG = OmegaConf.load(Path(__file__).parents[1] / "conf" / "dataset" / "mnist.yaml")


def dataset_cfg(root: Path, **changes) -> OmegaConf:
    return OmegaConf.merge(MNIST_CFG, {"root": str(root), "download": False, **changes})


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_reads_both_layouts_gzipped_or_raw(tmp_path: Path, gz: bool, layout: str) -> None:
    write_dataset(tmp_path, n_train=40, n_test=20, gz=gz, layout=layout)
    train = read_split(dataset_cfg(tmp_path), "train")
    test = read_split(dataset_cfg(tmp_path), "test")
    assert train.images.shape == (40, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.labels.tolist() == [i % 10 for i in range(20)]


def test_idx_round_trip(tmp_path: Path) -> None:
    array = torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8)
    write_idx(tmp_path / "a.gz", array)
    assert torch.equal(read_idx(tmp_path / "a.gz"), array)


def test_decoded_files_are_cached_decoded_again_when_changed_and_never_read_when_corrupt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_dataset(tmp_path / "data", n_train=40, n_test=20)
    cache = tmp_path / "cache"
    uncached = read_split(dataset_cfg(tmp_path / "data", cache_dir=None), "train")
    first = read_split(dataset_cfg(tmp_path / "data", cache_dir=str(cache)), "train")
    [entry] = cache.glob("idx-train-images-idx3-ubyte.gz-*.pt")
    written = entry.stat().st_mtime_ns
    again = read_split(dataset_cfg(tmp_path / "data", cache_dir=str(cache)), "train")
    assert entry.stat().st_mtime_ns == written  # read, not written again
    for split in (first, again):
        assert torch.equal(split.images, uncached.images) and torch.equal(split.labels, uncached.labels)
    # a changed file: decoded again, into a new entry
    write_idx(tmp_path / "data" / "train-labels-idx1-ubyte.gz", (torch.arange(40) + 1).remainder(10).to(torch.uint8))
    changed = read_split(dataset_cfg(tmp_path / "data", cache_dir=str(cache)), "train")
    assert changed.labels.tolist() == [(i + 1) % 10 for i in range(40)]
    assert len(list(cache.glob("idx-train-images-idx3-ubyte.gz-*.pt"))) == 2
    # a damaged entry: said in one line, decoded again and written anew
    for damaged in cache.glob("*.pt"):
        damaged.write_bytes(b"not a cache entry")
    with caplog.at_level("WARNING"):
        rebuilt = read_split(dataset_cfg(tmp_path / "data", cache_dir=str(cache)), "train")
    assert torch.equal(rebuilt.labels, changed.labels) and torch.equal(rebuilt.images, uncached.images)
    assert caplog.text.count("unreadable cache entry") == 1
    caplog.clear()
    with caplog.at_level("WARNING"):
        read_split(dataset_cfg(tmp_path / "data", cache_dir=str(cache)), "train")
    assert "unreadable" not in caplog.text  # the entry written anew is read


def corrupt(folder: Path, name: str, data: bytes) -> None:
    (folder / name).write_bytes(gzip.compress(data))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: corrupt(d, "train-images-idx3-ubyte.gz", b"\x00\x00\x09\x03" + bytes(12)), "bad magic number"),
        (
            lambda d: corrupt(
                d, "train-images-idx3-ubyte.gz", gzip.decompress((d / "train-images-idx3-ubyte.gz").read_bytes())[:-100]
            ),
            "truncated or corrupt",
        ),
        (lambda d: (d / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all"), "cannot read it"),
        (lambda d: write_idx(d / "train-labels-idx1-ubyte.gz", torch.zeros(39, dtype=torch.uint8)), "40 images but"),
        (
            lambda d: write_idx(d / "train-labels-idx1-ubyte.gz", torch.full((40,), 12, dtype=torch.uint8)),
            "label 12 is out of range",
        ),
        (lambda d: (d / "train-images-idx3-ubyte.gz").unlink(), "train-images-idx3-ubyte(.gz) not found"),
    ],
    ids=["magic", "truncated", "not-gzip", "count-mismatch", "label-range", "missing"],
)
def test_bad_files_give_one_clear_error(tmp_path: Path, damage, message: str) -> None:
    write_dataset(tmp_path, n_train=40, n_test=20)
    damage(tmp_path)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")) as error:
        read_split(dataset_cfg(tmp_path), "train")
    assert "\n" not in str(error.value)


def test_missing_files_without_download_name_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(UserError) as error:
        read_split(dataset_cfg(tmp_path / "empty"), "test")
    text = str(error.value)
    assert str(tmp_path / "empty") in text and "MNIST/raw" in text and "dataset.root=" in text


def test_a_failed_download_says_why_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision's own downloader, from a mirror that refuses the connection (no network needed):
    the message names the data set once and ends with the download's own error."""
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(UserError) as error:
        read_split(dataset_cfg(tmp_path, download=True), "train")
    text = str(error.value)
    assert text.startswith(f"dataset=mnist: the IDX files are not in {tmp_path} and downloading them failed (")
    assert "refused" in text.lower() and "\n" not in text and "mnist: mnist" not in text


def test_validation_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    write_dataset(tmp_path, n_train=100, n_test=10)
    full = read_split(dataset_cfg(tmp_path), "train")
    full.images = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1).expand(100, 1, 28, 28).clone()
    train_a, val_a = train_val_split(full, 0.2, seed=3)
    train_b, val_b = train_val_split(full, 0.2, seed=3)
    _, val_c = train_val_split(full, 0.2, seed=4)
    ids = lambda split: set(split.images[:, 0, 0, 0].tolist())  # noqa: E731
    assert len(val_a) == 20 and len(train_a) == 80
    assert ids(val_a) == ids(val_b) and ids(val_a) != ids(val_c)
    assert not ids(val_a) & ids(train_a)
    assert len(train_val_split(full, 7, seed=0)[1]) == 7  # a count works too


def test_batch_prep_normalizes_and_augments_reproducibly() -> None:
    images = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8)
    prep = BatchPrep(MNIST_CFG)
    plain = prep(images, train=False)
    assert torch.allclose(plain, (images.float() / 255 - 0.1307) / 0.3081)
    first = prep(images, train=True, generator=torch.Generator().manual_seed(0))
    again = prep(images, train=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(first, again) and not torch.allclose(first, plain)
    off = BatchPrep(OmegaConf.merge(MNIST_CFG, {"augment": {"enabled": False}}))
    assert torch.equal(off(images, train=True, generator=torch.Generator()), plain)


def test_elastic_distortion_bends_each_image_by_a_smooth_field_of_its_own() -> None:
    images = torch.zeros(32, 1, 28, 28, dtype=torch.uint8)
    images[:, :, 6:22, 12:16] = 255  # a bar, like a 1
    still = {"max_shift": 0, "max_rotate": 0, "max_scale": 0}
    plain = BatchPrep(OmegaConf.merge(MNIST_CFG, {"augment": still}))
    bent = BatchPrep(OmegaConf.merge(MNIST_CFG, {"augment": {**still, "elastic_alpha": 34, "elastic_sigma": 4}}))
    draw = lambda prep: prep.pixels(images, train=True, generator=torch.Generator().manual_seed(0))  # noqa: E731
    assert torch.allclose(draw(plain), images.float() / 255, atol=1e-5)  # off: the images as they are
    out = draw(bent)
    assert torch.equal(out, draw(bent))  # the same draws, the same bends
    changed = (out - images.float() / 255).abs().flatten(1).sum(1)
    assert (changed > 1).all() and len(set(changed.round(decimals=2).tolist())) > 16  # each its own bend
    ink = out.flatten(1).sum(1) / (images.float() / 255).flatten(1).sum(1)
    assert ((ink > 0.6) & (ink < 1.5)).all()  # stretched or squeezed here and there, not erased or smeared
    field = 34 * smoothed(torch.rand(8, 2, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1, 4)
    step = (field[..., 1:] - field[..., :-1]).abs().mean()
    assert 0.5 < field.std() < 3 and step < field.abs().mean() / 4  # pixels of movement, varying slowly


def test_fashion_mirrors_half_the_images_and_digits_are_never_mirrored() -> None:
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    pixels = images.float() / 255
    still = {"max_shift": 0, "max_rotate": 0, "max_scale": 0}
    fashion = compose_config("dataset=fashion_mnist").dataset
    assert fashion.augment.hflip and not compose_config().dataset.augment.hflip
    prep = BatchPrep(OmegaConf.merge(fashion, {"augment": still}))
    out = prep.pixels(images, train=True, generator=torch.Generator().manual_seed(0))
    same = [torch.allclose(o, p, atol=1e-5) for o, p in zip(out, pixels)]
    mirrored = [torch.allclose(o, p.flip(-1), atol=1e-5) for o, p in zip(out, pixels)]
    assert all(a != b for a, b in zip(same, mirrored)) and 16 < sum(mirrored) < 48
    digits = BatchPrep(OmegaConf.merge(MNIST_CFG, {"augment": still}))
    assert torch.allclose(
        digits.pixels(images, train=True, generator=torch.Generator().manual_seed(0)), pixels, atol=1e-5
    )
