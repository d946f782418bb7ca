"""Whether a finetuned run may replace the model it started from (finetune.max_forgetting).

A finetune on new images (a served model's corrections) is measured twice, before and after: on
the holdout, the test split of the data set the model first learned (MNIST's test images, which
no correction ever touched), and on the new data set's own test split (held-back corrections).
It is promoted when the holdout's accuracy drops by no more than finetune.max_forgetting points
and the held-back corrections' accuracy rises (or stays at 100%: a model already right on all of
them cannot do better there). The verdict goes into summary.json (`promote`,
`gate`); `mnist serve`'s POST /reload refuses a run that was not promoted (`refusal`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mnist_cli.data.batches import BatchPrep
from mnist_cli.data.datasets import load_split
from mnist_cli.data.split import Split
from mnist_cli.evaluation.inference import outputs
from mnist_cli.run_dir import RunDir
from mnist_cli.training.runtime import autocast


def holdout_of(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The data set whose test split measures what a finetune of `checkpoint` forgets: the one its
    first ancestor learned (kept along a chain of finetunes), else its own."""
    return checkpoint.get("holdout") or checkpoint["config"]["dataset"]


def accuracy(model: nn.Module, split: Split, dataset: DictConfig, device: torch.device, precision: str) -> float:
    """`model`'s top-1 accuracy on `split`, its inputs normalized as `dataset` says."""
    prep = BatchPrep(dataset)
    model.eval().to(device)
    with autocast(device, precision):
        logits = outputs(lambda x: model(prep(x.to(device), train=False)), split.images, 1024)
    return (logits.argmax(1).cpu() == split.labels.cpu()).double().mean().item()


def verdict(holdout: tuple[float, float], corrections: tuple[float, float], max_forgetting: float) -> tuple[bool, str]:
    """(promote, why) for the (before, after) accuracies on the holdout and the held-back corrections."""
    forgot = round(100 * (holdout[0] - holdout[1]), 2)
    if forgot > max_forgetting:
        return False, f"the holdout lost {forgot:.2f} points, over finetune.max_forgetting={max_forgetting}"
    if corrections[1] < 1 and corrections[1] <= corrections[0]:  # all right before and after: nothing to improve
        return False, f"the held-back corrections did not improve ({corrections[0]:.2%} -> {corrections[1]:.2%})"
    learned = "improved" if corrections[1] > corrections[0] else "stayed all right"
    return True, f"the holdout lost {max(forgot, 0):.2f} points (at most {max_forgetting}), the corrections {learned}"


def judge(
    cfg: DictConfig,
    before: nn.Module,
    after: nn.Module,
    checkpoint: dict[str, Any],
    corrections: Split,
    device: torch.device,
    precision: str,
) -> dict[str, Any]:
    """summary.json's `promote` and `gate` for the finetuned model `after` (its run's settled `cfg`,
    its test split `corrections`), started from `checkpoint` (whose model is `before`)."""
    saved = checkpoint["config"]
    holdout = OmegaConf.create(holdout_of(checkpoint))
    preprocess = OmegaConf.create(saved["preprocess"]) if saved.get("preprocess") else None
    test = load_split(holdout, "test", preprocess)
    old_prep = OmegaConf.create(saved["dataset"])
    on_holdout = (
        accuracy(before, test, old_prep, device, precision),
        accuracy(after, test, cfg.dataset, device, precision),
    )
    on_corrections = (
        accuracy(before, corrections, old_prep, device, precision),
        accuracy(after, corrections, cfg.dataset, device, precision),
    )
    promote, why = verdict(on_holdout, on_corrections, cfg.finetune.max_forgetting)
    if not len(corrections):
        promote, why = False, f"{cfg.dataset.name} has no test images to measure the corrections on; add more images"
    return {
        "promote": promote,
        "gate": {
            "holdout": f"{holdout.name} test ({len(test)} images)",
            "holdout_acc_before": on_holdout[0],
            "holdout_acc_after": on_holdout[1],
            "forgetting_points": round(100 * (on_holdout[0] - on_holdout[1]), 2),
            "max_forgetting": cfg.finetune.max_forgetting,
            "corrections": f"{cfg.dataset.name} test ({len(corrections)} images)",
            "corrections_acc_before": on_corrections[0],
            "corrections_acc_after": on_corrections[1],
            "reason": why,
        },
    }


def refusal(checkpoint: Path) -> str | None:
    """Why the run that wrote `checkpoint` (its checkpoints/ folder's parent) may not be served in
    place of another model, or None: it is unfinished, or its gate did not promote it."""
    recorded = RunDir(checkpoint.parent.parent).read_summary()
    if recorded is None:  # a checkpoint file outside a run directory: nothing recorded against it
        return None
    if recorded.get("status") != "completed":
        return f"{checkpoint.parent.parent} has not finished (status {recorded.get('status', 'unknown')})"
    if recorded.get("promote") is False:
        return f"{checkpoint.parent.parent} was not promoted: {recorded['gate']['reason']}"
    return None
