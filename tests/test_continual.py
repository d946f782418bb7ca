"""Finetuning on new images without forgetting: the head kept, grown or replaced as the classes
say; the checkpoint's images replayed beside the new ones; the memory a finetuned checkpoint keeps
for the next one; and the mistakes a person can make, each one line."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from mnist_cli.data.replay import class_balanced_sample, mixed
from mnist_cli.data.split import Split
from mnist_cli.errors import UserError
from mnist_cli.evaluation.gate import refusal, verdict
from mnist_cli.stages.finetune import run_classes
from mnist_cli.training.checkpoint import load_checkpoint

from conftest import (
    BAD_INPUTS,
    FAST,
    interrupted_after_an_epoch,
    make_images,
    metrics,
    mnist,
    run_dirs,
    summary,
    untimed,
)


def split_of(labels: list[int]) -> Split:
    return Split(torch.arange(len(labels)).view(-1, 1, 1, 1).to(torch.uint8), torch.tensor(labels))


def test_a_grown_head_keeps_the_old_rows_bit_identical() -> None:
    from mnist_cli.config.compose import compose_config
    from mnist_cli.models import build_model

    model = build_model(compose_config("model=cnn").model, 10).eval()
    old_weight, old_bias = model.head[-1].weight.clone(), model.head[-1].bias.clone()
    model.grow_head(12)
    assert model.num_classes == 12
    assert torch.equal(model.head[-1].weight[:10], old_weight) and torch.equal(model.head[-1].bias[:10], old_bias)
    x = torch.rand(4, 1, 28, 28)
    assert model(x).shape == (4, 12)


def test_the_replay_sample_is_class_balanced_and_the_mix_holds_its_share() -> None:
    labels = [0] * 50 + [1] * 30 + [2] * 4
    sample = class_balanced_sample(split_of(labels), 30, seed=1)
    assert torch.bincount(sample.labels).tolist() == [13, 13, 4]  # the small class whole, the rest shared
    assert torch.equal(sample.labels, class_balanced_sample(split_of(labels), 30, seed=1).labels)  # seeded
    new, old = split_of([5] * 10), split_of([1] * 200)
    both = mixed(new, old, 0.5)
    assert (both.labels == 5).sum() == 200 and (both.labels == 1).sum() == 200  # the 10 new repeated 20 times
    assert len(mixed(split_of([5] * 1000), split_of([1] * 10), 0.2)) == 1000 + 250


@pytest.mark.parametrize(
    ("found", "asked", "classes", "how"),
    [
        (["7", "1"], "auto", list("0123456789"), "keep"),  # a few corrections: the checkpoint's numbering
        (["a", "b"], "auto", ["a", "b"], "replace"),  # a new task
        (["7", "x"], "grow", [*"0123456789", "x"], "grow"),
        (["7", "1"], "replace", ["7", "1"], "replace"),
    ],
)
def test_the_head_follows_the_classes(found: list[str], asked: str, classes: list[str], how: str) -> None:
    supervised = SimpleNamespace(objective="supervised")
    assert run_classes(list("0123456789"), found, asked, supervised) == (classes, how)


def test_a_class_the_checkpoint_does_not_know_is_refused_without_grow() -> None:
    supervised = SimpleNamespace(objective="supervised")
    with pytest.raises(UserError, match="finetune.classes=grow adds them"):
        run_classes(list("0123456789"), ["7", "x"], "auto", supervised)
    with pytest.raises(UserError, match="class x is not one the checkpoint knows"):
        run_classes(list("0123456789"), ["x"], "keep", supervised)


def test_the_gate_promotes_only_a_run_that_kept_the_holdout_and_learned_the_corrections() -> None:
    assert verdict((0.9900, 0.9885), (0.50, 0.80), max_forgetting=0.2)[0]  # lost 0.15 points, learned
    forgot, why = verdict((0.9900, 0.9850), (0.50, 0.95), max_forgetting=0.2)
    assert not forgot and "lost 0.50 points, over finetune.max_forgetting=0.2" in why
    learned_nothing, why = verdict((0.9900, 0.9910), (0.60, 0.60), max_forgetting=0.2)
    assert not learned_nothing and "did not improve" in why
    assert verdict((0.9900, 0.9890), (1.0, 1.0), max_forgetting=0.2) == (
        True, "the holdout lost 0.10 points (at most 0.2), the corrections stayed all right"
    )  # fmt: skip
    assert not verdict((0.9900, 0.9890), (1.0, 0.9), max_forgetting=0.2)[0]


def write_store(root: Path, per_class: dict[str, int], seed: int = 5) -> Path:
    """A feedback-store-like folder: <class>/<n>.png, the images of the tiny data's classes."""
    for name, count in per_class.items():
        (root / name).mkdir(parents=True)
        label = int(name) if name.isdigit() else 9
        for i, image in enumerate(make_images(torch.full((count,), label), seed=seed)):
            Image.fromarray(image.numpy()).save(root / name / f"{i}.png")
    (root / ".originals").mkdir()
    (root / "feedback.csv").write_text("id,label\n")
    return root


@pytest.fixture(scope="module")
def trained(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("continual")
    done = mnist("pretrain", f"dataset.root={tiny_data}", "dataset.download=false", *FAST, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return run_dirs(cwd, "pretrain")[0]


def test_finetuning_on_corrections_replays_the_checkpoint_and_keeps_a_memory(trained: Path, tmp_path: Path) -> None:
    store = write_store(tmp_path / "feedback", {"3": 12, "7": 12})
    done = mnist(
        "finetune", f"ckpt={trained}", "dataset=folder", f"dataset.root={store}", "finetune.replay.size=40",
        "trainer.min_steps=0", "trainer.epochs=1", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [run] = run_dirs(tmp_path, "finetune")
    assert "replay: 40 of the checkpoint's training images mixed with the" in (run / "run.log").read_text()
    assert summary(run)["classes"] == list("0123456789")  # the checkpoint's head and numbering, kept
    best = load_checkpoint(run / "checkpoints" / "best.ckpt")
    assert best["num_classes"] == 10 and best["config"]["finetune"]["classes"] == "keep"
    memory = best["memory"]
    assert len(memory["labels"]) == 40 and set(memory["labels"].tolist()) == set(range(10))
    # the next finetune replays that memory, not the data set
    again = mnist(
        "finetune", f"ckpt={run}", "dataset=folder", f"dataset.root={write_store(tmp_path / 'more', {'5': 12})}",
        "finetune.replay.size=20", "trainer.min_steps=0", "trainer.epochs=1", cwd=tmp_path,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    second = load_checkpoint(run_dirs(tmp_path, "finetune")[-1] / "checkpoints" / "best.ckpt")
    assert len(second["memory"]["labels"]) == 20 and 5 in second["memory"]["labels"].tolist()


def test_a_run_that_forgot_is_not_promoted_and_serve_will_not_reload_it(trained: Path, tmp_path: Path) -> None:
    """Finetuned on two classes alone (no replay) for many steps, the model forgets the other eight:
    the gate measures it on the checkpoint's test split and says so; a replayed run is judged too."""
    store = write_store(tmp_path / "feedback", {"3": 40, "7": 40})
    common = ["finetune", f"ckpt={trained}", "dataset=folder", f"dataset.root={store}", "trainer.min_steps=0"]
    forgot = mnist(*common, "finetune.replay.size=0", "trainer.epochs=6", "optimizer.lr=1e-2", cwd=tmp_path)
    assert forgot.returncode == 0, forgot.stderr
    [run] = run_dirs(tmp_path, "finetune")
    record = summary(run)
    found = record["gate"]
    before = summary(trained)["test_acc"]
    assert abs(found["holdout_acc_before"] - before) < 1e-9  # the checkpoint's own test split, measured again
    assert found["holdout"].startswith("mnist test") and found["corrections"].startswith("folder test")
    assert found["forgetting_points"] > 0.2 and record["promote"] is False
    assert (
        "over finetune.max_forgetting=0.2" in found["reason"]
        and "gate: do not promote" in (run / "run.log").read_text()
    )
    assert refusal(run / "checkpoints" / "best.ckpt") == f"{run} was not promoted: {found['reason']}"
    assert refusal(trained / "checkpoints" / "best.ckpt") is None
    shown = mnist("report", str(run), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if "->" in line)
    assert f"{found['holdout_acc_before']:.4f} -> {found['holdout_acc_after']:.4f}" in row and " no " in row
    # the finetuned checkpoint keeps the holdout, so a finetune of it is measured on the same images
    assert load_checkpoint(run / "checkpoints" / "best.ckpt")["holdout"]["name"] == "mnist"


def test_a_finetune_with_replay_resumes_bit_identically(trained: Path, tmp_path: Path) -> None:
    store = write_store(tmp_path / "feedback", {"3": 12, "7": 12})
    args = [
        "finetune", f"ckpt={trained}", "dataset=folder", f"dataset.root={store}", "finetune.replay.size=40",
        "trainer.min_steps=0", "trainer.epochs=12", "trainer.batch_size=16", "trainer.deterministic=true",
    ]  # fmt: skip
    (tmp_path / "whole").mkdir()
    (tmp_path / "stopped").mkdir()
    whole = mnist(*args, cwd=tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    [whole_run] = run_dirs(tmp_path / "whole", "finetune")
    stopped = interrupted_after_an_epoch(*args, cwd=tmp_path / "stopped")
    resumed = mnist("finetune", f"resume={stopped}", cwd=tmp_path / "stopped")
    assert resumed.returncode == 0, resumed.stderr
    assert (stopped / "run.log").read_text().count("replay: 40 of the checkpoint's training images") == 2  # resumed too
    assert untimed(metrics(whole_run)) == untimed(metrics(stopped))
    a, b = (load_checkpoint(run / "checkpoints" / "last.ckpt") for run in (whole_run, stopped))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert torch.equal(a["memory"]["images"], b["memory"]["images"])


@pytest.mark.faults
def test_replay_mistakes_are_one_line(trained: Path, tmp_path: Path) -> None:
    partly_new = write_store(tmp_path / "partly_new", {"3": 12, "x": 12})
    cases = [
        ("a class the checkpoint does not know", [f"dataset.root={partly_new}"], "finetune.classes=grow adds them"),
        ("an empty store", [f"dataset.root={tmp_path / 'nothing'}"], "no such folder"),
    ]
    for case, args, said in cases:
        done = mnist("finetune", f"ckpt={trained}", "dataset=folder", *args, cwd=tmp_path)
        BAD_INPUTS.append((f"mnist finetune ({case})", done.stderr.strip()))
        assert done.returncode == 2 and said in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    # the checkpoint's own images are gone: say what to pass
    ckpt = load_checkpoint(trained / "checkpoints" / "best.ckpt")
    ckpt["config"]["dataset"]["root"] = str(tmp_path / "no_such_data")
    ckpt["config"]["dataset"]["download"] = False
    moved = tmp_path / "moved.ckpt"
    torch.save(ckpt, moved)
    done = mnist(
        "finetune", f"ckpt={moved}", "dataset=folder", f"dataset.root={write_store(tmp_path / 'fb', {'3': 12})}",
        cwd=tmp_path,
    )  # fmt: skip
    BAD_INPUTS.append(("mnist finetune (replay of a checkpoint whose data is gone)", done.stderr.strip()))
    assert done.returncode == 2 and "finetune.replay.size=0" in done.stderr, done.stderr
