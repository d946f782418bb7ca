"""`mnist explain ckpt=... [input=...]`: why a checkpoint answers what it answers. The images are
read and made inputs as `mnist predict` makes them (stages/predict.py), or taken from the test
split (the most confidently wrong first); the model is loaded as eval, predict and serve load it
(stages/source.py); the maps come from evaluation/attribution.py. Writes explanations.png (input,
map, overlay, top 3 per image), explanations.npz (inputs, maps N x 28 x 28, probabilities,
predictions, true labels when known, IG's convergence deltas) and explanations.csv."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig

from mnist_cli.data.batches import BatchPrep
from mnist_cli.data.datasets import load_dataset
from mnist_cli.deploy.loading import load_classifier
from mnist_cli.errors import UserError
from mnist_cli.evaluation.attribution import attribute
from mnist_cli.evaluation.inference import outputs
from mnist_cli.models.calibrated import uncalibrated
from mnist_cli.report import plots
from mnist_cli.report.console import print_predictions
from mnist_cli.run_dir import RunDir, csv_text, write_bytes, write_text
from mnist_cli.stages import task_overrides
from mnist_cli.stages.predict import read_inputs
from mnist_cli.training.runtime import setup


def run(cfg: DictConfig, run: RunDir, resume: dict[str, Any] | None) -> dict[str, Any]:
    if isinstance(cfg.ckpt, ListConfig) or str(cfg.ckpt).endswith(".onnx"):
        raise UserError("explain takes one checkpoint (a run dir or .ckpt): its maps come from its gradients")
    device = setup(cfg)
    [source], model = load_classifier(cfg, task_overrides())
    model.to(device).eval()
    prep = BatchPrep(cfg.dataset)
    classes = list(cfg.dataset.classes)
    run.write_config(cfg)

    def probabilities_of(digits: torch.Tensor) -> torch.Tensor:  # calibrated, float32
        return outputs(lambda x: model(prep(x, train=False)), digits, cfg.explain.batch_size).softmax(1)

    truth = None
    if cfg.input:
        rows, read = read_inputs(cfg)
        if not read:
            raise UserError(f"input={cfg.input}: no readable image there ({rows[0]['error'] if rows else 'no rows'})")
        names = [row["file"] for row in rows if not row["error"]]
        digits = torch.from_numpy(np.stack(read))[:, None].to(device)
    else:
        test = load_dataset(cfg.dataset, cfg.preprocess, train=False).test.to(device)
        chosen = pick_test_images(cfg.explain, probabilities_of(test.images).cpu(), test.labels.cpu())
        names = [f"test #{i} (true {classes[test.labels[i]]})" for i in chosen.tolist()]
        digits, truth = test.images[chosen.to(device)], test.labels.cpu()[chosen]

    probabilities = probabilities_of(digits).cpu()
    predicted = probabilities.argmax(1)
    black = -cfg.dataset.mean / cfg.dataset.std  # a black pixel, normalized: the path's start
    maps, deltas = attribute(uncalibrated(model), prep(digits, train=False), predicted.to(device), cfg.explain, black)
    maps, deltas = maps.cpu(), None if deltas is None else deltas.cpu()

    top = probabilities.topk(min(3, len(classes)), dim=1)
    rows = [
        {
            "file": name,
            "label": classes[i[0]],
            "confidence": round(p[0], 4),
            "next": " ".join(f"{classes[c]}:{q:.3f}" for c, q in zip(i[1:], p[1:])),
            **({"true": classes[truth[n]]} if truth is not None else {}),
            **({"convergence_delta": round(float(deltas[n]), 5)} if deltas is not None else {}),
            "error": "",
        }
        for n, (name, p, i) in enumerate(zip(names, top.values.tolist(), top.indices.tolist()))
    ]
    inputs = digits[:, 0].cpu().numpy()
    write_text(run.path / "explanations.csv", csv_text(rows))
    arrays = {"inputs": inputs, "maps": maps.numpy(), "probabilities": probabilities.numpy(), "predicted": predicted}
    arrays.update({"labels": truth.numpy()} if truth is not None else {})
    arrays.update({"convergence_deltas": deltas.numpy()} if deltas is not None else {})
    write_bytes(run.path / "explanations.npz", npz_bytes(classes=np.array(classes), **arrays))
    shown = cfg.explain.show
    plots.explanation_grid(
        list(inputs[:shown]),
        list(maps.numpy()[:shown]),
        [caption(row, classes, p) for row, p in zip(rows[:shown], probabilities[:shown])],
        run.path / "explanations.png",
    )
    print_predictions(
        rows[:shown],
        f"explain ({cfg.explain.method}): {source}; written: explanations.png, .npz, .csv in {run.path}",
    )
    return {
        "checkpoint": str(source),
        "method": cfg.explain.method,
        "images": len(rows),
        **({"mean_abs_convergence_delta": float(deltas.abs().mean())} if deltas is not None else {}),
    }


def pick_test_images(cfg: DictConfig, probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The test images to explain: the most confidently wrong first (then the most confidently
    right, if there are fewer mistakes than cfg.images), or the first ones."""
    if cfg.pick == "first":
        return torch.arange(min(cfg.images, len(labels)))
    confidence, predicted = probabilities.max(1)
    rank = confidence + 2.0 * (predicted != labels).float()  # every mistake above every right answer
    return torch.argsort(rank, descending=True)[: cfg.images]


def caption(row: dict[str, Any], classes: list[str], probabilities: torch.Tensor) -> str:
    top = probabilities.topk(min(3, len(classes)))
    lines = [f"{classes[i]:>6} {p:6.1%}" for p, i in zip(top.values.tolist(), top.indices.tolist())]
    return "\n".join([row["file"], *lines])


def npz_bytes(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()
