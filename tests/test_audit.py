"""`mnist audit`: confident learning ranks constructed label errors first; on a tiny folder with
planted flips, K-fold cross-validation run by the tool finds them; the test split judged by a
checkpoint; bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from mnist_cli.audit.issues import find_suspects

from conftest import BAD_INPUTS, FAST, make_images, mnist, run_dirs


def test_confident_learning_ranks_the_wrong_labels_first() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(300) % 3
    sure = 0.6 + 0.39 * torch.rand(300, generator=g)  # how sure the model is of each image's class
    sure[[3, 57, 123]] = 0.99
    probabilities = ((1 - sure) / 2).unsqueeze(1).repeat(1, 3)
    probabilities[torch.arange(300), labels] = sure
    wrong = torch.tensor([3, 57, 123])  # three clear 0s labeled 1
    given = labels.clone()
    given[wrong] = 1
    found = find_suspects(given, probabilities, "normalized_margin", 0)
    assert sorted(found.order.tolist()) == wrong.tolist()  # flagged: exactly the three
    assert int(found.flagged.sum()) == 3 and (found.scores < 0.5).all()
    assert found.order[:3].tolist() == find_suspects(given, probabilities, "normalized_margin", 5).order[:3].tolist()
    top = find_suspects(given, probabilities, "self_confidence", 10)
    assert len(top.order) == 10 and set(wrong.tolist()) <= set(top.order[:3].tolist())


def planted_folder(root: Path, per_class: int, flips: int) -> list[str]:
    """Class folders of easy images, `flips` of them filed under the wrong class; their file names."""
    labels = torch.arange(10 * per_class) % 10
    planted = []
    for i, (image, label) in enumerate(zip(make_images(labels, seed=2), labels.tolist())):
        filed = (label + 1) % 10 if i < flips else label
        folder = root / str(filed)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.numpy()).save(folder / f"img{i:04d}.png")
        if i < flips:
            planted.append(f"img{i:04d}.png")
    return planted


@pytest.mark.slow
def test_k_fold_audit_of_a_folder_ranks_the_planted_flips_first(tmp_path: Path) -> None:
    planted = planted_folder(tmp_path / "mine", per_class=16, flips=4)
    done = mnist(
        "audit", "dataset=folder", "dataset.root=mine", "preprocess=resize", "audit.split=all", "audit.folds=2",
        "audit.top=4", *FAST, "trainer.epochs=12", "trainer.batch_size=16", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [run] = run_dirs(tmp_path, "audit")
    rows = list(csv.DictReader(open(run / "suspects.csv")))
    assert {Path(r["file"]).name for r in rows[:4]} == set(planted)
    for row in rows[:4]:  # each filed one class too high: the suggestion is the class it shows
        assert int(row["suggested"]) == (int(row["given"]) - 1) % 10
    record = json.loads((run / "audit.json").read_text())
    assert record["images"] == 160 and record["judged_by"].startswith("2-fold") and record["flagged"] >= 3
    assert len(list((run / "folds").glob("*/checkpoints/best.ckpt"))) == 2
    assert (run / "suspects.png").is_file()


def test_the_test_split_is_judged_by_the_checkpoint(tiny_data: Path, tmp_path: Path) -> None:
    trained = mnist(
        "pretrain", f"dataset.root={tiny_data}", "dataset.download=false", *FAST, "trainer.epochs=4", cwd=tmp_path
    )
    assert trained.returncode == 0, trained.stderr
    done = mnist("audit", "ckpt=latest", "audit.top=20", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [run] = run_dirs(tmp_path, "audit")
    rows = list(csv.DictReader(open(run / "suspects.csv")))
    flagged = json.loads((run / "audit.json").read_text())["flagged"]
    assert len(rows) >= max(20, flagged) and {r["split"] for r in rows} == {"test"}
    assert sum(r["flagged"] == "True" for r in rows) == flagged  # every flagged image is listed
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores)
    assert json.loads((run / "audit.json").read_text())["images"] == 128


@pytest.mark.faults
@pytest.mark.parametrize(
    "case, args, said",
    [
        ("test split without a model", ["dataset.root=data"], "add ckpt=<run>"),
        ("not a folder", ["dataset=folder", "dataset.root=nowhere", "audit.split=all"], "no such folder"),
    ],
)
def test_bad_audit_input_is_one_line(case: str, args: list[str], said: str, tmp_path: Path) -> None:
    done = mnist("audit", *args, cwd=tmp_path)
    BAD_INPUTS.append((f"mnist audit ({case})", done.stderr.strip()))
    assert done.returncode == 2 and said in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("outputs/audit/*/suspects.csv"))
