"""Checkpoint files: plain data only (tensors, numbers, strings, lists, dicts), written atomically and
read with torch.load(weights_only=True), so a checkpoint can never run code. What `ckpt=` names
and the model a checkpoint holds: training/source.py.

A checkpoint holds: format, version, the run's resolved config, the model's name, class count and
weights (for a self-supervised objective: the backbone's, under classifier.*, and the projection
head's), the objective, the epoch, the metrics history and the best epoch; last.ckpt also holds the
optimizer, scheduler and grad-scaler states, every process's RNG states, and the epoch in progress
when it was saved mid-epoch: everything needed to resume.
"""

from __future__ import annotations

import io
import pickle
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import yaml

from mnist_cli.errors import UserError
from mnist_cli.run_dir import write_bytes

FORMAT = "mnist-cli-checkpoint"
VERSION = 1


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Serialize in memory, then write the file in one go (so a full disk is a plain OSError)."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **payload}, buffer)
    write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load and check a checkpoint; every way it can be wrong ends in a UserError."""
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; pass a run directory or a .ckpt file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any failure to parse means the file is not a usable checkpoint
        if isinstance(e, pickle.UnpicklingError) and "GLOBAL" in str(e):  # it names code to import and call
            raise UserError(
                f"{path}: refused: it holds Python objects beyond plain data, and loading it could run code; "
                "use a checkpoint written by mnist"
            ) from None
        first = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0]
        raise UserError(
            f"{path}: not a readable checkpoint, truncated or corrupt ({first}); use another checkpoint"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(
            f"{path}: not an mnist checkpoint; pass a checkpoint written by `mnist pretrain` or `mnist finetune`"
        )
    if ckpt.get("version") != VERSION:
        raise UserError(
            f"{path}: checkpoint version {ckpt.get('version')} is not supported (this mnist reads {VERSION})"
        )
    upgrade(ckpt.get("config", {}))
    return ckpt


# What conf/model's _target_ named before it named the function that builds the classifier.
BACKBONE_CLASSES = {
    "mnist_cli.models.cnn.CNNBackbone": "mnist_cli.models.cnn.cnn",
    "mnist_cli.models.resnet18.ResNet18Backbone": "mnist_cli.models.resnet18.resnet18",
    "mnist_cli.models.vit.ViTBackbone": "mnist_cli.models.vit.vit",
}
# What conf/dataset's `format` named before its `reader` named the function that reads the files.
READERS = {
    "idx": "mnist_cli.data.idx_files.read",
    "folder": "mnist_cli.data.folder.read",
    "csv": "mnist_cli.data.csv_table.read",
}


def upgrade(config: dict[str, Any]) -> None:
    """A config an older mnist saved, in this mnist's words: its model, objective, semi-supervised
    method, tracker and data set reader named by `_target_` (where it saved none: what the shipped
    option of its name builds)."""
    model, dataset = config.get("model", {}), config.get("dataset", {})
    if model.get("_target_") in BACKBONE_CLASSES:
        model["_target_"] = BACKBONE_CLASSES[model["_target_"]]
    for group in ("model", "objective", "semi_supervised", "logger"):
        node = config.get(group, {})
        if "name" in node and "_target_" not in node and (target := shipped_target(group, node["name"])):
            node["_target_"] = target
    if "name" in dataset and "reader" not in dataset:  # (before `format` existed, every data set was IDX files)
        dataset["reader"] = {"_target_": READERS[dataset.pop("format", "idx")]}


def shipped_target(group: str, name: str) -> str | None:
    """The `_target_` of conf/<group>/<name>.yaml (None: no such option, or it names none)."""
    path = resources.files("mnist_cli.conf").joinpath(group, f"{name}.yaml")
    if not path.is_file():
        return None
    option = yaml.safe_load(path.read_text()) or {}
    return option.get(group, option).get("_target_")  # (a `# @package _global_` option: under its group's key)


def over_defaults(default: Any, saved: Any) -> Any:
    """A saved config (a checkpoint's) over the one this mnist composes, key by key, so that keys a
    newer mnist added get their defaults; a group whose `_target_` differs from the default
    option's (another model, optimizer or schedule) is the saved one whole, since its keys are its
    class's arguments."""
    if not (isinstance(default, dict) and isinstance(saved, dict)) or default.get("_target_") != saved.get("_target_"):
        return saved
    return {**default, **{key: over_defaults(default.get(key), value) for key, value in saved.items()}}
