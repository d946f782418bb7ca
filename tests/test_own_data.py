"""People's own data: folders of image files (dataset=folder), Kaggle's CSV layout (dataset=csv),
the rest of the MNIST family in each one's on-disk layout, class names from the files to eval,
predict and serve, the conversion cache, and bad files."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from mnist_cli.config.compose import compose_config
from mnist_cli.data import folder
from mnist_cli.data.datasets import load_dataset
from mnist_cli.data.idx import write_idx
from mnist_cli.errors import UserError
from mnist_cli.training.checkpoint import load_checkpoint

from conftest import BAD_INPUTS, FAST, make_images, mnist, run_dirs, serving, summary

NAMES = ["circle", "cross", "dot"]  # class folder names (any names work)


def write_tree(root: Path, per_class: int = 12, split: bool = True, seed: int = 0) -> Path:
    """Class folders of tiny images whose class is where a bright square sits (as make_images):
    PNG and JPEG, grayscale and RGB, light on dark and dark on light, at several sizes."""
    images = make_images(torch.arange(per_class * len(NAMES)) % len(NAMES), seed).numpy()
    for i, image in enumerate(images):
        part = ("train" if i % 4 else "test") if split else ""
        target = root / part / NAMES[i % len(NAMES)]
        target.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(image)
        if i % 5 == 1:
            picture = Image.fromarray(255 - image)  # dark on light: made light on dark (preprocess.invert=auto)
        if i % 3 == 1:
            picture = picture.convert("RGB")
        size = (28, 56, 84)[i % 3]
        picture = picture.resize((size, size), Image.Resampling.NEAREST)
        picture.save(target / f"{i:03d}.{'jpg' if i % 7 == 3 else 'png'}")
    return root


def folder_cfg(root: Path, *overrides: str):
    cfg = compose_config("dataset=folder", f"dataset.root={root}", "preprocess=resize", *overrides)
    return cfg.dataset, cfg.preprocess


def test_a_tree_of_mixed_files_is_read_and_bad_files_are_skipped_and_listed(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "tree")
    (root / "train" / "cross" / "notes.txt").write_text("not an image")
    (root / "train" / "dot" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    hidden = root / "train" / "circle" / ".thumbnails"
    hidden.mkdir()
    Image.new("L", (28, 28)).save(hidden / "x.png")  # in a hidden folder: not read
    Image.new("L", (28, 28)).save(root / "train" / "circle" / ".y.png")  # hidden file: not read
    nested = root / "train" / "circle" / "more"
    nested.mkdir()
    Image.fromarray(make_images(torch.tensor([0]), 5)[0].numpy()).save(nested / "n.png")  # nested: read
    data = load_dataset(*folder_cfg(root))
    assert data.classes == NAMES
    assert len(data.train) + len(data.val) == 27 + 1 and len(data.test) == 9
    assert [line.split(":")[0] for line in data.skipped] == [
        str(root / "train" / "cross" / "notes.txt"),
        str(root / "train" / "dot" / "broken.png"),
    ]
    assert data.train.images.dtype == torch.uint8 and data.train.images.shape[1:] == (1, 28, 28)
    # every image, whatever its size, format, colour or polarity, became the same kind of input
    split = torch.cat([data.train.images, data.val.images])
    labels = torch.cat([data.train.labels, data.val.labels])
    for label in range(3):
        row, col = divmod(label, 4)
        square = split[labels == label][:, 0, 2 + 8 * row : 8 + 8 * row, 2 + 6 * col : 8 + 6 * col]
        assert square.float().mean() > 200  # the class's square is bright in all of them
    with pytest.raises(UserError, match=r"notes.txt: not a readable image .*\(2 such files\).*on_bad_file=skip"):
        load_dataset(*folder_cfg(root, "dataset.on_bad_file=fail"))


def test_one_tree_is_split_class_balanced_and_the_same_seed_gives_the_same_split(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "tree", per_class=20, split=False)
    data = load_dataset(*folder_cfg(root, "dataset.test_size=0.25", "dataset.val_size=0.2"))
    assert torch.bincount(data.test.labels).tolist() == [5, 5, 5]
    assert torch.bincount(data.val.labels).tolist() == [3, 3, 3]
    assert torch.bincount(data.train.labels).tolist() == [12, 12, 12]
    again = load_dataset(*folder_cfg(root, "dataset.test_size=0.25", "dataset.val_size=0.2"))
    assert torch.equal(again.test.images, data.test.images)
    other = load_dataset(*folder_cfg(root, "dataset.test_size=0.25", "dataset.val_size=0.2", "dataset.split_seed=1"))
    assert not torch.equal(other.test.images, data.test.images)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (r / "train" / "empty").mkdir(), r"train/empty: an empty class folder"),
        (
            lambda r: (r / "test" / "dot").rename(r / "test" / "extra"),  # a test class no training folder has
            "class 'extra' has test or validation images but no training images",
        ),
        (
            lambda r: (
                [p.unlink() for p in (r / "train" / "dot").iterdir()]
                and (r / "train" / "dot" / "a.txt").write_text("x")
            ),
            r"train/dot: none of its files is a readable image",
        ),
    ],
    ids=["empty class folder", "class only in test", "class of unreadable files"],
)
def test_broken_trees_end_in_one_line_naming_the_folder(tmp_path: Path, damage, message: str) -> None:
    root = write_tree(tmp_path / "tree")
    damage(root)
    with pytest.raises(UserError, match=message) as e:
        load_dataset(*folder_cfg(root))
    BAD_INPUTS.append((f"dataset=folder, {message.split(':')[-1].strip()}", str(e.value)))


def test_a_folder_without_images_is_refused_at_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "nothing" / "a").mkdir(parents=True)
    (tmp_path / "nothing" / "readme.txt").write_text("x")
    done = mnist("pretrain", "dataset=folder", f"dataset.root={tmp_path / 'nothing'}", cwd=tmp_path)
    assert done.returncode == 2 and "an empty class folder" in done.stderr and "Traceback" not in done.stderr
    done = mnist("pretrain", "dataset=folder", cwd=tmp_path)
    assert (
        done.returncode == 2
        and "dataset.root is not set: give the folder holding the class folders, dataset.root=" in done.stderr
    )
    BAD_INPUTS.append(("mnist pretrain dataset=folder (no root)", done.stderr.strip()))


def test_converted_images_are_cached_and_converted_again_when_a_file_or_setting_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_tree(tmp_path / "tree")
    conversions = []
    convert_all = folder.convert_all
    monkeypatch.setattr(folder, "convert_all", lambda *a: conversions.append(1) or convert_all(*a))
    cache = tmp_path / "cache"
    first = load_dataset(*folder_cfg(root, f"dataset.cache_dir={cache}"))
    second = load_dataset(*folder_cfg(root, f"dataset.cache_dir={cache}"))
    assert len(conversions) == 1 and torch.equal(first.train.images, second.train.images)
    changed = root / "train" / "dot" / "002.png"  # a dot image becomes blank
    Image.new("L", (28, 28), 0).save(changed)
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    third = load_dataset(*folder_cfg(root, f"dataset.cache_dir={cache}"))
    assert len(conversions) == 2
    assert not torch.equal(
        torch.cat([third.train.images, third.val.images]).sum(), torch.cat([first.train.images, first.val.images]).sum()
    )
    load_dataset(*folder_cfg(root, f"dataset.cache_dir={cache}", "preprocess=mnist_like"))
    assert len(conversions) == 3 and len(list(cache.glob("*.pt"))) == 3


def write_csv(path: Path, images: np.ndarray, labels: np.ndarray | None) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow((["label"] if labels is not None else []) + [f"pixel{i}" for i in range(784)])
        for i, image in enumerate(images.reshape(len(images), -1)):
            writer.writerow(([int(labels[i])] if labels is not None else []) + image.tolist())


def test_kaggle_csv_round_trip_trains_and_writes_a_submission(tmp_path: Path) -> None:
    labels = np.arange(300) % 10
    write_csv(tmp_path / "train.csv", make_images(torch.from_numpy(labels), 0).numpy(), labels)
    hidden = np.arange(25) % 10
    write_csv(tmp_path / "test.csv", make_images(torch.from_numpy(hidden), 1).numpy(), None)
    done = mnist("pretrain", "dataset=csv", f"dataset.root={tmp_path}", *FAST, "trainer.epochs=4", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run = run_dirs(tmp_path, "pretrain")[0]
    result = summary(run)
    assert result["train_images"] + 0 < 300 and result["test_acc"] > 0.5  # test carved from train.csv
    done = mnist("predict", f"ckpt={run}", f"input={tmp_path / 'test.csv'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    predicted = run_dirs(tmp_path, "predict")[0]
    rows = list(csv.DictReader((predicted / "submission.csv").open()))
    assert list(rows[0]) == ["ImageId", "Label"] and [int(r["ImageId"]) for r in rows] == list(range(1, 26))
    assert np.mean([int(r["Label"]) == h for r, h in zip(rows, hidden)]) > 0.5
    labelled = list(csv.DictReader((predicted / "predictions.csv").open()))
    assert [r["label"] for r in labelled] == [r["Label"] for r in rows]


@pytest.mark.parametrize(
    ("row", "message"),
    [("1," + ",".join(["0"] * 783), "line 3 has 784 values"), ("1," + ",".join(["300"] * 784), "outside 0-255")],
    ids=["short row", "pixel out of range"],
)
def test_a_bad_csv_row_is_one_line_naming_it(tmp_path: Path, row: str, message: str) -> None:
    labels = np.arange(20) % 10
    write_csv(tmp_path / "train.csv", make_images(torch.from_numpy(labels), 0).numpy(), labels)
    with (tmp_path / "train.csv").open() as f:
        lines = f.read().splitlines()
    (tmp_path / "train.csv").write_text("\n".join([*lines[:2], row, *lines[2:]]) + "\n")
    cfg = compose_config("dataset=csv", f"dataset.root={tmp_path}", f"dataset.cache_dir={tmp_path / 'c'}")
    with pytest.raises(UserError, match=message) as e:
        load_dataset(cfg.dataset)
    BAD_INPUTS.append((f"dataset=csv, {e.type.__name__}: a {row[:12]}... row", str(e.value)))


def asymmetric() -> torch.Tensor:
    """An image that its transpose is not: an L, tall bar on the left and a foot to the right."""
    image = torch.zeros(28, 28, dtype=torch.uint8)
    image[4:24, 6:9] = 255
    image[21:24, 6:20] = 255
    return image


@pytest.mark.parametrize("family", ["kmnist", "qmnist", "emnist"])
def test_each_family_reads_its_own_on_disk_layout(tmp_path: Path, family: str) -> None:
    images = torch.stack([asymmetric()] * 6)
    if family == "kmnist":  # torchvision's KMNIST/raw/, gzipped, MNIST's file names
        raw, stems, labels = tmp_path / "KMNIST" / "raw", ["train", "t10k"], torch.arange(6, dtype=torch.uint8)
        names = {s: (f"{s}-images-idx3-ubyte.gz", f"{s}-labels-idx1-ubyte.gz") for s in stems}
    elif family == "qmnist":  # int labels of 8 columns, the class first
        raw, stems = tmp_path / "QMNIST" / "raw", ["train", "test"]
        labels = torch.stack([torch.arange(6), *[torch.full((6,), 7)] * 7], 1).to(torch.int32)
        names = {s: (f"qmnist-{s}-images-idx3-ubyte.gz", f"qmnist-{s}-labels-idx2-int.gz") for s in stems}
    else:  # EMNIST letters: uncompressed, images stored transposed, labels from 1
        raw, stems = tmp_path / "EMNIST" / "raw", ["train", "test"]
        images, labels = images.transpose(1, 2), torch.arange(1, 7, dtype=torch.uint8)
        names = {s: (f"emnist-letters-{s}-images-idx3-ubyte", f"emnist-letters-{s}-labels-idx1-ubyte") for s in stems}
    raw.mkdir(parents=True)
    for image_file, label_file in names.values():
        write_idx(raw / image_file, images)
        write_idx(raw / label_file, labels)
    split = ["dataset.split=letters"] if family == "emnist" else []
    cfg = compose_config(f"dataset={family}", f"dataset.root={tmp_path}", "dataset.download=false", *split)
    data = load_dataset(cfg.dataset, train=False)
    assert data.test.labels.tolist() == list(range(6))
    assert torch.equal(data.test.images[0, 0], asymmetric())  # upright, as drawn
    assert (
        data.classes[:3] == {"kmnist": ["o", "ki", "su"], "qmnist": ["0", "1", "2"], "emnist": ["a", "b", "c"]}[family]
    )


@pytest.fixture(scope="module")
def named_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained on a folder tree whose classes are named by its folders."""
    cwd = tmp_path_factory.mktemp("named")
    root = write_tree(cwd / "shapes", per_class=40)
    done = mnist(
        "pretrain", "dataset=folder", f"dataset.root={root}", "preprocess=resize", *FAST, "trainer.epochs=6", cwd=cwd
    )
    assert done.returncode == 0, done.stderr
    return run_dirs(cwd, "pretrain")[0]


def test_class_names_travel_from_the_folders_to_checkpoint_eval_and_predict(named_run: Path) -> None:
    cwd = named_run.parents[2]
    ckpt = load_checkpoint(named_run / "checkpoints" / "best.ckpt")
    saved = OmegaConf.create(ckpt["config"])
    assert list(saved.dataset.classes) == NAMES and saved.preprocess.mode == "resize"
    assert saved.dataset.mean is not None and saved.dataset.std > 0  # measured on the training images
    done = mnist("eval", f"ckpt={named_run}", cwd=cwd)
    assert done.returncode == 0, done.stderr
    report = json.loads((run_dirs(cwd, "eval")[0] / "eval.json").read_text())
    assert report["classes"] == NAMES and report["test_acc"] > 0.8
    assert all(name in done.stdout for name in NAMES)  # the per-class table
    done = mnist("predict", f"ckpt={named_run}", f"input={cwd / 'shapes' / 'test' / 'dot'}", cwd=cwd)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((run_dirs(cwd, "predict")[0] / "predictions.csv").open()))
    assert {r["label"] for r in rows} <= set(NAMES) and [r["label"] for r in rows].count("dot") > len(rows) / 2


@pytest.mark.slow
def test_serve_answers_with_the_class_name_and_its_index(named_run: Path) -> None:
    image = next((named_run.parents[2] / "shapes" / "test" / "cross").glob("*.png")).read_bytes()
    with serving(f"ckpt={named_run}", cwd=named_run.parents[2]) as server:
        answer = httpx.post(server.url + "predict", files={"file": ("x.png", image)}).json()["predictions"][0]
        info = httpx.get(server.url + "info").json()
    assert answer["label"] == "cross" and answer["class_index"] == 1
    assert set(answer["probabilities"]) == set(NAMES) and info["classes"] == NAMES


def test_mnist_data_shows_counts_sizes_and_what_the_model_sees(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "tree")
    (root / "train" / "dot" / "notes.txt").write_text("not an image")
    done = mnist("data", "dataset=folder", f"dataset.root={root}", "preprocess=resize", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [run] = run_dirs(tmp_path, "data")
    shown = json.loads((run / "data.json").read_text())
    assert shown["classes"] == NAMES and shown["images"] == 36 and shown["skipped_files"] == 1
    assert [sum(c) for c in shown["counts"].values()] == [24, 3, 9]  # train, val (one a class), test
    assert "height 28-84" in shown["file_sizes"]
    assert (run / "skipped.txt").read_text().startswith(str(root / "train" / "dot" / "notes.txt"))
    for name in ("samples.png", "augmented.png"):
        assert Image.open(run / name).size[0] > 100
    assert "1 file(s) skipped" in done.stderr + done.stdout and "circle" in done.stdout


def test_the_family_downloads_through_torchvisions_own_class_with_its_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision.datasets

    from mnist_cli.data.idx_files import download

    calls = []
    monkeypatch.setattr(torchvision.datasets, "EMNIST", lambda root, **kwargs: calls.append((root, kwargs)))
    cfg = compose_config("dataset=emnist", f"dataset.root={tmp_path}", "dataset.split=letters")
    download(cfg.dataset)
    assert calls == [
        (str(tmp_path), {"train": True, "download": True, "split": "letters"}),
        (str(tmp_path), {"train": False, "download": True, "split": "letters"}),
    ]
