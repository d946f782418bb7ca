"""`mnist explain ckpt=... [input=...]`: why a checkpoint answers what it answers. The images are
read and made inputs as `mnist predict` makes them (stages/predict.py), or taken from the test
split (the most confidently wrong first); the model and its maps come from the predictor that
predict and serve use (deploy/predictor.py; the maps from evaluation/attribution.py). Writes
explanations.png (input, map, overlay, top 3 per image), explanations.npz (inputs, maps N x 28 x
28, probabilities, predictions, true labels when known, IG's convergence deltas) and
explanations.csv."""

from __future__ import annotations

import io
import logging
from typing import Any

import numpy as np
import torch

from mnist_cli.data.datasets import load_dataset
from mnist_cli.deploy.predictor import load_predictor
from mnist_cli.errors import UserError
from mnist_cli.evaluation.metrics import mistakes_first
from mnist_cli.report import plots
from mnist_cli.report.console import print_predictions
from mnist_cli.run_dir import csv_text, write_bytes, write_text
from mnist_cli.stages.context import StageContext
from mnist_cli.stages.predict import fill_answers, read_inputs

log = logging.getLogger(__name__)


def run(ctx: StageContext) -> dict[str, Any]:
    cfg, source = ctx.settle_with_source(onnx=True)  # the checkpoint's model, data set and preprocessing
    run = ctx.run
    predictor = load_predictor(cfg, source)
    if predictor.explain is None:
        raise UserError(
            "explain takes one checkpoint (a run dir or .ckpt), not an .onnx file or an ensemble: "
            "its maps come from the model's gradients"
        )
    checkpoint, classes = predictor.info["checkpoint"], predictor.classes

    truth = None
    if cfg.input:
        rows, read = read_inputs(cfg)
        if not read:
            raise UserError(f"input={cfg.input}: no readable image there ({rows[0]['error'] if rows else 'no rows'})")
        errors = [row.pop("error") for row in rows]
        unreadable = [row["file"] for row, error in zip(rows, errors) if error]
        if unreadable:
            log.warning("%d of the files are not readable images, left out: e.g. %s", len(unreadable), unreadable[0])
        rows = [row for row, error in zip(rows, errors) if not error]
        digits = np.stack(read)
    else:
        test = load_dataset(cfg.dataset, cfg.preprocess, train=False).test
        images = test.images[:, 0].numpy()
        if cfg.explain.pick == "first":
            chosen = torch.arange(min(cfg.explain.images, len(test)))
        else:
            everything = torch.from_numpy(predictor.predict_all(images, cfg.trainer.eval_batch_size))
            chosen = mistakes_first(everything, test.labels)[: cfg.explain.images]
        truth = test.labels[chosen]
        rows = [{"file": f"test #{i} (true {classes[test.labels[i]]})"} for i in chosen.tolist()]
        digits = images[chosen.numpy()]

    probabilities, maps, deltas = predictor.explain(digits)
    probabilities = torch.from_numpy(probabilities)
    fill_answers(rows, probabilities, classes, top_k=3)
    for n, row in enumerate(rows):
        row.update({"true": classes[truth[n]]} if truth is not None else {})
        row.update({"convergence_delta": round(float(deltas[n]), 5)} if deltas is not None else {})
    write_text(run.path / "explanations.csv", csv_text(rows))
    arrays = {"inputs": digits, "maps": maps, "probabilities": probabilities.numpy()}
    arrays["predicted"] = probabilities.argmax(1).numpy()
    arrays.update({"labels": truth.numpy()} if truth is not None else {})
    arrays.update({"convergence_deltas": deltas} if deltas is not None else {})
    write_bytes(run.path / "explanations.npz", npz_bytes(classes=np.array(classes), **arrays))
    shown = cfg.explain.show
    plots.explanation_grid(
        list(digits[:shown]),
        list(maps[:shown]),
        [caption(row, classes, p) for row, p in zip(rows[:shown], probabilities[:shown])],
        run.path / "explanations.png",
    )
    print_predictions(
        rows[:shown],
        f"explain ({cfg.explain.method}): {checkpoint}; written: explanations.png, .npz, .csv in {run.path}",
    )
    return {
        "checkpoint": checkpoint,
        "method": cfg.explain.method,
        "images": len(rows),
        **({"mean_abs_convergence_delta": float(np.abs(deltas).mean())} if deltas is not None else {}),
    }


def caption(row: dict[str, Any], classes: list[str], probabilities: torch.Tensor) -> str:
    top = probabilities.topk(min(3, len(classes)))
    lines = [f"{classes[i]:>6} {p:6.1%}" for p, i in zip(top.values.tolist(), top.indices.tolist())]
    return "\n".join([row["file"], *lines])


def npz_bytes(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()
