"""`mnist export ckpt=... format=onnx|torchscript|int8 [prune=0.5]`: write the model as a file
that runs without this package (deploy/export.py), load it back, check it on real test images against
the float32 PyTorch model, and print and record the comparison (size, accuracy, largest logit
difference). A check that fails leaves the file in place and ends in a one-line error."""

from __future__ import annotations

import gzip
import io
from typing import Any

import torch

from mnist_cli.data.datasets import load_split
from mnist_cli.deploy import export
from mnist_cli.deploy.inference import ready
from mnist_cli.errors import UserError
from mnist_cli.evaluation.inference import outputs
from mnist_cli.report.console import print_export
from mnist_cli.stages.context import StageContext

SUFFIX = {"onnx": "onnx", "torchscript": "pt", "int8": "int8.pt"}


def run(ctx: StageContext) -> dict[str, Any]:
    source = ctx.source().one("export").trained()
    cfg, run = ctx.settle(**source.config(ctx.cfg, ctx.overrides)), ctx.run
    # the export runs on the CPU in float32; the model keeps the temperature its training fitted
    loaded = ready(cfg, source, for_export=True)
    model = loaded.model

    test = load_split(cfg.dataset, "test", cfg.preprocess)
    n = cfg.export.check_images or len(test)
    images = loaded.prep(test.images[:n], train=False)
    labels = test.labels[:n]
    size = cfg.trainer.eval_batch_size

    def accuracy(logits: torch.Tensor) -> float:
        return (logits.argmax(1) == labels).double().mean().item()

    reference = outputs(model, images, size)
    rows = [
        {
            "model": "checkpoint (float32, PyTorch)",
            **sizes(state_bytes(model)),
            "accuracy": accuracy(reference),
            "max_diff": 0.0,
        }
    ]
    pruned = 0
    baseline = reference  # what the exported file should reproduce
    if cfg.prune:
        pruned = export.prune_weights(model, cfg.prune)
        baseline = outputs(model, images, size)
        rows.append(
            {
                "model": f"pruned {cfg.prune:.0%} (PyTorch)",
                **sizes(state_bytes(model)),
                "accuracy": accuracy(baseline),
                "max_diff": None,
            }
        )

    path = run.path / f"model.{SUFFIX[cfg.format]}"
    predict = export.export(model, cfg.format, path, images[:2], export.preprocessing(cfg.dataset), cfg.export.opset)
    exported = outputs(predict, images, size)
    max_diff = (exported - baseline).abs().max().item()
    rows.append(
        {
            "model": f"{path.name} ({cfg.format})",
            **sizes(path.read_bytes()),
            "accuracy": accuracy(exported),
            "max_diff": max_diff,
        }
    )

    results = {
        "checkpoint": source.name,
        "format": cfg.format,
        "file": str(path),
        "file_bytes": path.stat().st_size,
        "check_images": n,
        "reference_acc": rows[0]["accuracy"],
        "exported_acc": rows[-1]["accuracy"],
        "max_logit_diff": max_diff,
        "pruned_weights": pruned,
        "comparison": rows,
        "preprocessing": export.preprocessing(cfg.dataset),
    }
    run.write_json("export.json", results)
    print_export(rows, f"export: {source.name} -> {path} (checked on {n} {cfg.dataset.name} test images)")

    drop = rows[0]["accuracy"] - rows[-1]["accuracy"]
    if cfg.format in ("onnx", "torchscript") and max_diff > cfg.export.tolerance:
        raise UserError(
            f"{path.name} differs from PyTorch by up to {max_diff:.2g} in its logits (tolerance "
            f"export.tolerance={cfg.export.tolerance}); the file is kept for inspection"
        )
    if drop > cfg.export.max_accuracy_drop:
        raise UserError(
            f"{path.name} is {drop:.2%} less accurate than the float32 model (allowed: export.max_accuracy_drop="
            f"{cfg.export.max_accuracy_drop}); prune less, or keep float32 (format=torchscript)"
        )
    return results


def sizes(data: bytes) -> dict[str, int]:
    """A file's size, and gzipped (where zeroed weights pay off)."""
    return {"bytes": len(data), "gzip_bytes": len(gzip.compress(data))}


def state_bytes(model: torch.nn.Module) -> bytes:
    """The model's weights as torch.save writes them: the float32 size to compare against."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()
