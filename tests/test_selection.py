"""`mnist select`: each strategy on constructed numbers picks what it should; the pool leaves out
what a checkpoint trained on; the command end to end on a folder and on IDX files; bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from mnist_cli.errors import UserError
from mnist_cli.selection.pool import labeled_indices
from mnist_cli.selection.strategies import bald, k_center, pick, typical, uncertainty

from conftest import BAD_INPUTS, FAST, make_images, mnist, run_dirs

# Four images' probabilities over three classes: sure, torn between two, torn between three, fairly sure.
P = torch.tensor([[0.98, 0.01, 0.01], [0.50, 0.49, 0.01], [0.34, 0.33, 0.33], [0.80, 0.15, 0.05]])


def test_uncertainty_strategies_pick_the_least_sure() -> None:
    assert pick("least_confidence", 2, 4, 0, probabilities=P)[0].tolist() == [2, 1]
    assert pick("entropy", 2, 4, 0, probabilities=P)[0].tolist() == [2, 1]
    # margin: the two likeliest classes nearly tied is the least sure (0.01 apart), before the three-way tie
    assert pick("margin", 1, 4, 0, probabilities=P)[0].tolist() == [1]
    assert uncertainty("margin", P).argmin() == 0 and uncertainty("entropy", P).argmin() == 0


def test_bald_picks_disagreement_not_mere_uncertainty() -> None:
    # Image 0: every sample says "torn 50/50" (uncertain, but the samples agree: no information to gain).
    # Image 1: half the samples are sure of class 0, half sure of class 1 (the same mean, disagreement).
    torn = torch.tensor([0.5, 0.5])
    samples = torch.stack(
        [torch.stack([torn, torch.tensor([0.99, 0.01])]), torch.stack([torn, torch.tensor([0.01, 0.99])])]
    )
    scores = bald(samples)
    assert scores[1] > 0.5 and scores[0].abs() < 1e-6
    assert pick("bald", 1, 2, 0, samples=samples)[0].tolist() == [1]


def test_k_center_picks_the_farthest_point_from_the_labeled() -> None:
    features = torch.tensor([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [0.0, 5.0]])
    picks, scores = k_center(features, 2, labeled=torch.tensor([[0.0, 0.0]]))
    assert picks.tolist() == [2, 3]  # 10 away, then 5 away from both (0,0) and (10,0)
    assert scores.tolist() == pytest.approx([10.0, 5.0])


def test_typical_takes_one_dense_image_from_each_cluster() -> None:
    g = torch.Generator().manual_seed(0)
    blob_a = torch.randn(30, 2, generator=g) * 0.1
    blob_b = torch.randn(30, 2, generator=g) * 0.1 + torch.tensor([20.0, 0.0])
    outlier = torch.tensor([[10.0, 30.0]])
    features = torch.cat([blob_a, blob_b, outlier])
    picks, _ = typical(features, 2, seed=0, neighbours=5)
    assert sorted(int(p) // 30 for p in picks) == [0, 1]  # one from each blob, not the outlier
    for p in picks.tolist():  # the densest point of its blob: near its centre
        centre = features[(p // 30) * 30 : (p // 30 + 1) * 30].mean(0)
        assert (features[p] - centre).norm() < 0.15


def test_random_is_seeded_and_budget_is_checked() -> None:
    assert pick("random", 3, 10, 7)[0].tolist() == pick("random", 3, 10, 7)[0].tolist()
    with pytest.raises(UserError, match="the pool holds 4 images"):
        pick("margin", 5, 4, 0, probabilities=P)
    with pytest.raises(UserError, match="the pool is empty"):
        pick("random", 1, 0, 0)


def test_the_pool_leaves_out_what_a_run_trained_and_validated_on() -> None:
    labels = torch.arange(200) % 10
    dataset = OmegaConf.create({"val_size": 0.1, "split_seed": 3, "labels_per_class": 2, "label_fraction": None})
    trained, val = labeled_indices(dataset, 200, labels)
    assert len(trained) == 20 and len(val) == 20 and not set(trained.tolist()) & set(val.tolist())
    assert torch.bincount(labels[trained], minlength=10).tolist() == [2] * 10
    # the same positions the training run drew (data/split.py, replayed on the images themselves)
    from mnist_cli.data.split import Split, split_labels, train_val_split

    images = torch.arange(200).view(200, 1, 1, 1) * 7
    train, _ = train_val_split(Split(images, labels), 0.1, 3)
    kept, _ = split_labels(train, 2, None, 3)
    assert sorted((kept.images.flatten() // 7).tolist()) == sorted(trained.tolist())


@pytest.fixture(scope="module")
def trained_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("select")
    done = mnist(
        "pretrain", f"dataset.root={tiny_data}", "dataset.download=false", "dataset.labels_per_class=5", *FAST, cwd=cwd
    )
    assert done.returncode == 0, done.stderr
    return run_dirs(cwd, "pretrain")[0]


def write_pool(folder: Path, n: int) -> list[Path]:
    folder.mkdir()
    files = []
    for i, image in enumerate(make_images(torch.arange(n) % 10, seed=9)):
        files.append(folder / f"img{i:03d}.png")
        Image.fromarray(255 - image.numpy()).save(files[-1])  # dark strokes on white paper, as photographed
    return files


def test_select_on_a_folder_writes_the_picks_and_copies_them(trained_run: Path, tmp_path: Path) -> None:
    files = write_pool(tmp_path / "pool", 30)
    (tmp_path / "labeled" / "3").mkdir(parents=True)
    (tmp_path / "labeled" / "3" / files[0].name).write_bytes(files[0].read_bytes())  # labeled already
    done = mnist(
        "select", f"ckpt={trained_run}", "select.pool=pool", "select.exclude=labeled", "select.budget=5",
        "select.strategy=entropy", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [run] = run_dirs(tmp_path, "select")
    rows = list(csv.DictReader(open(run / "select.csv")))
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4, 5]
    assert files[0].name not in {Path(r["file"]).name for r in rows}
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and all(r["guess"] in "0123456789" for r in rows)
    copied = sorted(p.name for p in (run / "to_label").glob("*.png"))
    assert copied == sorted(Path(r["file"]).name for r in rows)
    guesses = list(csv.DictReader(open(run / "to_label" / "guesses.csv")))
    assert [g["guess"] for g in guesses] == [r["guess"] for r in rows]
    assert (run / "to_label.png").stat().st_size > 0
    record = json.loads((run / "select.json").read_text())
    assert record["pool_images"] == 29 and record["excluded"] == 1 and len(record["picks"]) == 5


def test_select_cold_start_and_the_training_split_of_idx_files(
    trained_run: Path, tiny_data: Path, tmp_path: Path
) -> None:
    write_pool(tmp_path / "pool", 30)
    cold = mnist("select", "select.pool=pool", "select.budget=4", cwd=tmp_path)
    assert cold.returncode == 0, cold.stderr
    assert json.loads((run_dirs(tmp_path, "select")[0] / "select.json").read_text())["strategy"] == "typical"
    idx = mnist(
        "select",
        f"ckpt={trained_run}",
        f"dataset.root={tiny_data}",
        "select.strategy=bald",
        "select.budget=7",
        cwd=tmp_path,
    )
    assert idx.returncode == 0, idx.stderr
    run = run_dirs(tmp_path, "select")[-1]
    record = json.loads((run / "select.json").read_text())
    # 256 training images: 50 labeled (5 a class) and 13 validation images are not the pool's
    assert record["pool_images"] == 256 - 50 - 13 and record["excluded"] == 63
    rows = list(csv.DictReader(open(run / "select.csv")))
    assert {r["split"] for r in rows} == {"train"} and len({r["index"] for r in rows}) == 7
    assert not (run / "to_label").exists()


def write_listed(path: Path, positions: list[int]) -> str:
    with open(path, "w", newline="") as f:
        f.write("rank,split,index\n" + "".join(f"{r},train,{i}\n" for r, i in enumerate(positions, 1)))
    return str(path)


def test_a_listed_choice_of_labels_keeps_exactly_those(tmp_path: Path) -> None:
    from mnist_cli.data.chosen import file_positions, split_listed
    from mnist_cli.data.split import Split, train_val_split

    images = torch.arange(100).view(100, 1, 1, 1)  # each image is its own position in the file
    train, val = train_val_split(Split(images, torch.arange(100) % 10), 0.1, 2)
    positions, val_positions = file_positions(100, 0.1, 2)
    assert (
        positions.tolist() == train.images.flatten().tolist()
        and val_positions.tolist() == val.images.flatten().tolist()
    )
    chosen = [int(i) for i in positions[[3, 40, 7]]]
    labeled, pool = split_listed(train, val, write_listed(tmp_path / "a.csv", chosen), 0.1, 2)
    assert sorted(labeled.images.flatten().tolist()) == sorted(chosen) and len(pool) == 90 - 3
    assert not set(pool.images.flatten().tolist()) & set(chosen)
    for positions_, said in (([int(val_positions[0])], "1 of its images are validation images"), ([100], "outside")):
        with pytest.raises(UserError, match=said):
            split_listed(train, val, write_listed(tmp_path / "b.csv", positions_), 0.1, 2)
    (tmp_path / "c.csv").write_text("rank,file\n1,a.png\n")
    with pytest.raises(UserError, match="no `index` column"):
        split_listed(train, val, str(tmp_path / "c.csv"), 0.1, 2)


def test_a_cold_start_pick_is_what_a_semi_supervised_run_learns_from(tiny_data: Path, tmp_path: Path) -> None:
    picked = mnist("select", f"dataset.root={tiny_data}", "select.budget=20", cwd=tmp_path)
    assert picked.returncode == 0, picked.stderr
    [run] = run_dirs(tmp_path, "select")
    record = json.loads((run / "select.json").read_text())
    assert record["strategy"] == "typical" and record["pool_images"] == 256 - 13 and record["excluded"] == 13
    trained = mnist(
        "pretrain", f"dataset.root={tiny_data}", f"dataset.labeled={run / 'select.csv'}", "semi_supervised=fixmatch",
        "trainer.max_steps=3", "trainer.min_steps=0", "model.channels=[8,16]", "model.hidden=32", cwd=tmp_path,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    log = (run_dirs(tmp_path, "pretrain")[0] / "run.log").read_text()
    assert "20 train / 13 val images" in log and f"{256 - 13 - 20} more without labels" in log


@pytest.mark.faults
@pytest.mark.parametrize(
    "case, args, said",
    [
        ("empty pool", ["select.pool=empty"], "the folder is empty"),
        ("budget over the pool", ["select.pool=pool", "select.budget=50"], "the pool holds 30 images"),
        ("all labeled already", ["select.pool=pool", "select.exclude=pool", "CKPT"], "the pool is empty"),
        ("not images", ["select.pool=junk"], "none of its 2 files is a readable image"),
        ("uncertainty without a model", ["select.pool=pool", "select.strategy=margin"], "needs a model's answers"),
        (
            "classes differ",
            ["select.pool=pool", "select.budget=5", "dataset.classes=[a,b,c]", "CKPT"],
            "predicts 10 classes",
        ),
    ],
)
def test_bad_select_input_is_one_line_and_writes_nothing(
    case: str, args: list[str], said: str, trained_run: Path, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    write_pool(tmp_path / "pool", 30)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_text("not an image")
    (tmp_path / "junk" / "b.txt").write_text("notes")
    args = [f"ckpt={trained_run}" if a == "CKPT" else a for a in args]
    done = mnist("select", *args, cwd=tmp_path)
    BAD_INPUTS.append((f"mnist select ({case})", done.stderr.strip()))
    assert done.returncode == 2, done.stderr
    assert said in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("outputs/select/*/select.csv"))
