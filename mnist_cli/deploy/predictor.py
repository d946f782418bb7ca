"""A trained model as one function from MNIST-like digits, uint8 (N, 28, 28), to class
probabilities, float32 (N, classes): a checkpoint (run directory, .ckpt or latest) or an ensemble
of them (ckpt=[a,b,c] or a sweep's folder: their probabilities averaged) through PyTorch,
under the run's device and precision, or an exported .onnx file through onnxruntime; for one
checkpoint also its attribution maps (`explain`). What `mnist predict`, `mnist explain` and
`mnist serve` run, and what serve's GET /info tells about it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from mnist_cli.deploy.export import load_onnx
from mnist_cli.deploy.inference import ready
from mnist_cli.errors import UserError
from mnist_cli.evaluation.attribution import attribute
from mnist_cli.models.calibrated import uncalibrated
from mnist_cli.training.source import Source

Predict = Callable[[np.ndarray], np.ndarray]
Explain = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray | None]]


@dataclass
class Predictor:
    predict: Predict  # uint8 digits (N, 28, 28) -> probabilities (N, classes)
    classes: list[str]
    info: dict[str, Any]  # backend, checkpoint (its path), model, device, precision, recorded test_acc
    # uint8 digits -> (probabilities, attribution maps (N, 28, 28) of the top class as cfg.explain
    # says, integrated gradients' convergence deltas or None); None: an .onnx file or an ensemble,
    # which have no one set of gradients to follow
    explain: Explain | None = None

    def predict_all(self, digits: np.ndarray, batch_size: int) -> np.ndarray:
        """predict() over any number of digits, `batch_size` at a time."""
        return np.concatenate([self.predict(digits[i : i + batch_size]) for i in range(0, len(digits), batch_size)])


def recorded_accuracy(file: Path) -> float | None:
    """The accuracy its run recorded: a checkpoint's run dir (file's grandparent) has test_acc, an
    export's run dir (file's parent) exported_acc. None when neither is there."""
    for folder, key in ((file.parent.parent, "test_acc"), (file.parent, "exported_acc")):
        summary = folder / "summary.json"
        if summary.is_file():
            value = json.loads(summary.read_text()).get(key)
            if value is not None:
                return value
    return None


def load_predictor(cfg: DictConfig, source: Source | None, threads: int | None = None) -> Predictor:
    """The model of ckpt=...: `source` (its checkpoints, which the settled `cfg` describes), or
    without one the .onnx file cfg.ckpt names; `threads`: torch's (or onnxruntime's) CPU threads
    for it (None: as trainer.num_threads says, for ONNX every core)."""
    return torch_predictor(cfg, source, threads) if source is not None else onnx_predictor(cfg, threads)


def torch_predictor(cfg: DictConfig, source: Source, threads: int | None) -> Predictor:
    loaded = ready(cfg, source.trained(), threads)
    model, prep, device, paths = loaded.model, loaded.prep, loaded.device, source.paths

    def predict(digits: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(digits)[:, None].to(device)
        with torch.inference_mode(), loaded.autocast():
            return model(prep(x, train=False)).float().softmax(1).cpu().numpy()

    def explain(digits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        probabilities = predict(digits)
        x = prep(torch.from_numpy(digits)[:, None].to(device), train=False)
        top = torch.from_numpy(probabilities.argmax(1)).to(device)
        black = -cfg.dataset.mean / cfg.dataset.std  # a black pixel, normalized: integrated gradients' start
        maps, deltas = attribute(uncalibrated(model), x, top, cfg.explain, black)
        return probabilities, maps.cpu().numpy(), None if deltas is None else deltas.cpu().numpy()

    info = {
        "backend": "pytorch",
        "checkpoint": ", ".join(map(str, paths)),
        "model": cfg.model.name if len(paths) == 1 else f"ensemble of {len(paths)}",
        "dataset": cfg.dataset.name,
        "device": str(device),
        "precision": loaded.precision,
        "test_acc": recorded_accuracy(paths[0]) if len(paths) == 1 else None,
    }
    return Predictor(predict, list(cfg.dataset.classes), info, explain if len(paths) == 1 else None)


def onnx_predictor(cfg: DictConfig, threads: int | None) -> Predictor:
    source = Path(cfg.ckpt).expanduser()
    if not source.is_file():
        raise UserError(f"ckpt={cfg.ckpt}: no such file; give an .onnx file written by `mnist export format=onnx`")
    run_logits, recorded = load_onnx(source, threads)
    if not {"mean", "std", "classes"} <= recorded.keys():
        raise UserError(
            f"ckpt={source}: this .onnx file does not record its preprocessing (mean, std, classes); "
            "export it with `mnist export format=onnx`"
        )
    mean, std = recorded["mean"], recorded["std"]

    def predict(digits: np.ndarray) -> np.ndarray:
        x = (torch.from_numpy(digits)[:, None].float() / 255 - mean) / std
        return run_logits(x).float().softmax(1).numpy()

    info = {"backend": "onnxruntime", "checkpoint": str(source), "model": "onnx", "device": "cpu", "precision": "fp32"}
    return Predictor(predict, list(recorded["classes"]), {**info, "test_acc": recorded_accuracy(source)})
