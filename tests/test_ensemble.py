"""Ensembles: several checkpoints as one model (the average of their class probabilities), in
`mnist eval` (each member and the ensemble) and `mnist predict`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from mnist_cli.config.compose import compose_config
from mnist_cli.models import build_model
from mnist_cli.models.ensemble import Ensemble

from conftest import FAST, mnist, run_dirs, summary


def small_models(n: int) -> list[torch.nn.Module]:
    torch.manual_seed(0)
    return [build_model(compose_config(*FAST).model, 10).eval() for _ in range(n)]


def test_an_ensemble_of_one_is_its_member() -> None:
    [member] = small_models(1)
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(Ensemble([member])(x).softmax(1), member(x).softmax(1), atol=1e-6)


def test_an_ensemble_averages_its_members_probabilities() -> None:
    a, b = small_models(2)
    x = torch.randn(8, 1, 28, 28) * 3
    with torch.no_grad():
        averaged = (a(x).softmax(1) + b(x).softmax(1)) / 2
        ensemble = Ensemble([a, b])(x)
    assert torch.allclose(ensemble.softmax(1), averaged, atol=1e-6)
    assert torch.allclose(ensemble.exp(), averaged, atol=1e-6)  # its output is log-probabilities
    assert not torch.allclose(averaged, a(x).softmax(1), atol=1e-3)  # the members do differ


def probabilities(predictions_csv: Path) -> list[dict[str, float]]:
    """Each row's probability of every class (predict.top_k=10 lists them all)."""
    found = []
    for row in csv.DictReader(predictions_csv.open()):
        p = {row["label"]: float(row["confidence"])}
        p.update({c: float(q) for c, q in (item.split(":") for item in row["next"].split())})
        found.append(p)
    return found


@pytest.mark.slow
def test_eval_and_predict_take_a_sweep_folder_or_a_list_as_an_ensemble(tmp_path: Path, tiny_data: Path) -> None:
    sweep = mnist("pretrain", "-m", f"dataset.root={tiny_data}", *FAST, "trainer.seed=0,1", cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr
    [folder] = run_dirs(tmp_path, "multirun")
    members = [folder / "0", folder / "1"]

    evaluated = mnist("eval", f"ckpt={folder}", "trainer.precision=fp32", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    [run] = run_dirs(tmp_path, "eval")
    report = json.loads((run / "eval.json").read_text())
    assert report["checkpoint"] == [str(m / "checkpoints" / "best.ckpt") for m in members]
    assert [m["test_acc"] for m in report["members"]] == [summary(m)["test_acc"] for m in members]
    assert "ensemble of 2" in evaluated.stdout

    (tmp_path / "mine").mkdir()
    for i in range(3):
        image = Image.new("L", (28, 28), 0)
        image.paste(255, (4 + 6 * i, 4, 10 + 6 * i, 24))
        image.save(tmp_path / "mine" / f"{i}.png")
    each = []
    for ckpt in (str(members[0]), str(members[1]), f"[{members[0]},{members[1]}]"):
        predicted = mnist("predict", f"ckpt={ckpt}", f"input={tmp_path / 'mine'}", "predict.top_k=10", cwd=tmp_path)
        assert predicted.returncode == 0, predicted.stderr
        each.append(probabilities(run_dirs(tmp_path, "predict")[-1] / "predictions.csv"))
    first, second, ensemble = each
    for a, b, both in zip(first, second, ensemble):
        assert all(abs(both[c] - (a[c] + b[c]) / 2) <= 2e-3 for c in both)  # the CSV rounds to 3-4 digits


@pytest.mark.slow
def test_one_checkpoint_stages_refuse_several(tmp_path: Path, tiny_data: Path) -> None:
    sweep = mnist(
        "pretrain", "-m", f"dataset.root={tiny_data}", *FAST, "trainer.epochs=1", "trainer.seed=0,1", cwd=tmp_path
    )
    assert sweep.returncode == 0, sweep.stderr
    [folder] = run_dirs(tmp_path, "multirun")
    for stage, ckpt, message in (
        (
            "finetune",
            str(folder),
            f"finetune starts from one checkpoint, and ckpt= names 2; give one of them, e.g. ckpt={folder / '0'}",
        ),
        ("export", f"[{folder / '0'},{folder / '1'}]", "export starts from one checkpoint"),
    ):
        result = mnist(stage, f"ckpt={ckpt}", cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr, result.stderr
