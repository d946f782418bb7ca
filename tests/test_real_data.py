"""The default CNN recipe on real MNIST (the first 10k training images and the full test set).
Runs only where MNIST_CLI_REAL_DATA names a folder with the four IDX files (.ci/run sets it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REAL_DATA, mnist, run_dirs

pytestmark = [
    pytest.mark.real_data,
    pytest.mark.skipif(not REAL_DATA, reason="set MNIST_CLI_REAL_DATA to a folder with the real MNIST IDX files"),
]


def test_default_cnn_recipe_reaches_98_8_percent_and_eval_agrees(tmp_path: Path) -> None:
    result = mnist("pretrain", "model=cnn", f"dataset.root={REAL_DATA}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [run] = run_dirs(tmp_path, "pretrain")
    summary = json.loads((run / "summary.json").read_text())
    print(f"test accuracy {summary['test_acc']:.4f}, {summary['images_per_s']:.0f} images/s, {summary['wall_time_s']:.1f} s")
    assert summary["test_acc"] >= 0.988

    evaluate = mnist("eval", f"ckpt={run}", cwd=tmp_path)
    assert evaluate.returncode == 0, evaluate.stderr
    [eval_run] = run_dirs(tmp_path, "eval")
    assert json.loads((eval_run / "eval.json").read_text())["test_acc"] == summary["test_acc"]
