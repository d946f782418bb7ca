"""`mnist predict ckpt=... input=...`: label people's own images with a checkpoint or an exported
.onnx file (deploy/predictor.py). Each readable image is made MNIST-like (data/images.py), all are
classified in one batch, and the result is printed as a table and
written to predictions.csv, with inputs.png showing what the model saw. An unreadable file is
reported on its row; the others are still predicted."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from mnist_cli.data.images import find_images, load_grayscale, to_mnist
from mnist_cli.deploy.predictor import load_predictor
from mnist_cli.errors import UserError
from mnist_cli.report import plots
from mnist_cli.report.console import print_predictions
from mnist_cli.run_dir import RunDir, csv_text, write_text


def run(cfg: DictConfig, run: RunDir, resume: dict[str, Any] | None) -> dict[str, Any]:
    predictor = load_predictor(cfg)  # a checkpoint: cfg takes its model and data set (classes, normalization)
    source = predictor.info["checkpoint"]
    run.write_config(cfg)

    rows: list[dict[str, Any]] = []
    digits = []
    for path in find_images(cfg.input):
        row = {"file": str(path), "label": "", "confidence": "", "next": "", "error": ""}
        try:
            digits.append(to_mnist(load_grayscale(path), cfg.preprocess))
        except UserError as e:
            row["error"] = str(e)
        rows.append(row)
    if not digits:
        raise UserError(
            f"input={cfg.input}: none of the {len(rows)} files could be read as an image ({rows[0]['error']})"
        )

    probabilities = torch.from_numpy(predictor.predict(np.stack(digits)))
    classes = predictor.classes
    top = probabilities.topk(min(cfg.predict.top_k, len(classes)), dim=1)
    readable = [row for row in rows if not row["error"]]
    for row, p, i in zip(readable, top.values.tolist(), top.indices.tolist()):
        row.update(
            label=classes[i[0]],
            confidence=round(p[0], 4),
            next=" ".join(f"{classes[c]}:{q:.3f}" for c, q in zip(i[1:], p[1:])),
        )

    write_text(run.path / "predictions.csv", csv_text(rows))
    plots.image_grid(
        digits, [f"{r['label']} ({r['confidence']:.2f})" for r in readable], run.path / "inputs.png", columns=8
    )
    print_predictions(rows, f"predict: {source} on {cfg.input}; written: predictions.csv, inputs.png in {run.path}")
    return {
        "checkpoint": str(source),
        "images": len(rows),
        "predicted": len(readable),
        "unreadable": len(rows) - len(readable),
        "mean_confidence": float(top.values[:, 0].mean()),
    }
