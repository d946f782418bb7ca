"""`mnist predict ckpt=... input=...`: label people's own images with a checkpoint or an exported
.onnx file (deploy/predictor.py). Each readable image is made the model's 28x28 input by the
`preprocess` config (data/images.py); the rows of a CSV file (Kaggle's layout, data/csv_table.py)
already are inputs. All are classified in batches, and the result is printed as a table and written
to predictions.csv (a CSV input: also the competition's submission.csv), with inputs.png showing
what the model saw. An unreadable file is reported on its row; the others are still predicted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from mnist_cli.data.csv_table import read_csv
from mnist_cli.data.images import find_images, load_grayscale, preprocess
from mnist_cli.deploy.predictor import load_predictor
from mnist_cli.errors import UserError
from mnist_cli.report import plots
from mnist_cli.report.console import print_predictions
from mnist_cli.run_dir import csv_text, write_text
from mnist_cli.stages.context import StageContext


def read_inputs(cfg: DictConfig) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """A row per image (file, the columns filled in once predicted, and an error when it could not
    be read) and the readable ones' inputs."""

    def row(name: str) -> dict[str, Any]:
        return {"file": name, "label": "", "confidence": "", "next": "", "error": ""}

    source = Path(cfg.input).expanduser()
    if source.suffix.lower() == ".csv" and source.is_file():
        pixels, _ = read_csv(source)  # a label column, if any, is not used
        return [row(f"{source}#{i}") for i in range(1, len(pixels) + 1)], list(pixels)
    rows, digits = [], []
    for path in find_images(cfg.input):
        rows.append(row(str(path)))
        try:
            digits.append(preprocess(load_grayscale(path), cfg.preprocess))
        except UserError as e:
            rows[-1]["error"] = str(e)
    return rows, digits


def fill_answers(rows: list[dict[str, Any]], probabilities: torch.Tensor, classes: list[str], top_k: int) -> None:
    """Each row's label, confidence and the next `top_k` - 1 classes with their probabilities."""
    top = probabilities.topk(min(top_k, len(classes)), dim=1)
    for row, p, i in zip(rows, top.values.tolist(), top.indices.tolist()):
        row.update(
            label=classes[i[0]],
            confidence=round(p[0], 4),
            next=" ".join(f"{classes[c]}:{q:.3f}" for c, q in zip(i[1:], p[1:])),
        )


def run(ctx: StageContext) -> dict[str, Any]:
    cfg, source = ctx.settle_with_source(
        onnx=True
    )  # a checkpoint's model, data set (classes, normalization) and preprocessing
    run = ctx.run
    predictor = load_predictor(cfg, source)
    checkpoint = predictor.info["checkpoint"]

    rows, digits = read_inputs(cfg)
    if not digits:
        raise UserError(
            f"input={cfg.input}: none of the {len(rows)} files could be read as an image ({rows[0]['error']})"
            if rows
            else f"input={cfg.input}: the CSV file has no rows"
        )
    probabilities = torch.from_numpy(predictor.predict_all(np.stack(digits), cfg.trainer.eval_batch_size))
    readable = [row for row in rows if not row["error"]]
    fill_answers(readable, probabilities, predictor.classes, cfg.predict.top_k)

    written = ["predictions.csv", "inputs.png"]
    write_text(run.path / "predictions.csv", csv_text(rows))
    if Path(cfg.input).suffix.lower() == ".csv":  # Kaggle's submission format: ImageId from 1, Label
        written.append("submission.csv")
        write_text(
            run.path / "submission.csv",
            csv_text([{"ImageId": n, "Label": row["label"]} for n, row in enumerate(rows, 1)]),
        )
    shown = cfg.predict.show
    plots.image_grid(
        digits[:shown],
        [f"{r['label']} ({r['confidence']:.2f})" for r in readable[:shown]],
        run.path / "inputs.png",
        columns=8,
    )
    more = f" (the first {shown} of {len(rows)} shown)" if len(rows) > shown else ""
    print_predictions(
        rows[:shown], f"predict: {checkpoint} on {cfg.input}{more}; written: {', '.join(written)} in {run.path}"
    )
    return {
        "checkpoint": checkpoint,
        "images": len(rows),
        "predicted": len(readable),
        "unreadable": len(rows) - len(readable),
        "mean_confidence": float(probabilities.max(1).values.mean()),
    }
