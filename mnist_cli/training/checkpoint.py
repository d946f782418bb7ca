"""Checkpoints: plain data only (tensors, numbers, strings, lists, dicts), written atomically and
read with torch.load(weights_only=True), so a checkpoint can never run code.

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
from omegaconf import DictConfig, OmegaConf

from mnist_cli.errors import UserError
from mnist_cli.models import build_model
from mnist_cli.models.classifier import Classifier, classifier_state
from mnist_cli.run_dir import RunDir, write_bytes

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
    model = ckpt.get("config", {}).get("model", {})
    if "name" in model and "_target_" not in model:  # saved before conf/model named the backbone class
        model["_target_"] = shipped_model_class(model["name"])
    if ckpt.get("version") != VERSION:
        raise UserError(
            f"{path}: checkpoint version {ckpt.get('version')} is not supported (this mnist reads {VERSION})"
        )
    return ckpt


def shipped_model_class(name: str) -> str:
    """The backbone class that conf/model/<name>.yaml names."""
    return yaml.safe_load((resources.files("mnist_cli.conf") / "model" / f"{name}.yaml").read_text())["_target_"]


def over_defaults(default: Any, saved: Any) -> Any:
    """A saved config (a checkpoint's) over the one this mnist composes, key by key, so that keys a
    newer mnist added get their defaults; a group whose `_target_` differs from the default
    option's (another model, optimizer or schedule) is the saved one whole, since its keys are its
    class's arguments."""
    if not (isinstance(default, dict) and isinstance(saved, dict)) or default.get("_target_") != saved.get("_target_"):
        return saved
    return {**default, **{key: over_defaults(default.get(key), value) for key, value in saved.items()}}


def resolve_checkpoint(arg: str, outputs_root: str) -> Path:
    """`ckpt=` may be a .ckpt file, a run directory (its best.ckpt), or `latest`."""
    if arg == "latest":
        found = sorted(Path(outputs_root).glob("**/checkpoints/best.ckpt"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise UserError(f"ckpt=latest: no checkpoints under {outputs_root}/; run `mnist pretrain` first")
        return found[-1]
    path = Path(arg).expanduser()
    if path.is_dir():
        best = path / "checkpoints" / "best.ckpt"
        if best.is_file():
            return best
        jobs = sweep_checkpoints(path)
        if jobs:
            raise UserError(
                f"ckpt={arg} is a sweep's folder of {len(jobs)} runs; give one of them "
                f"(e.g. ckpt={path / '0'}), or the whole folder to `mnist eval` or `mnist predict` as an ensemble"
            )
        raise UserError(f"ckpt={arg}: no checkpoints/best.ckpt in that directory; is it a finished training run?")
    return path


def sweep_checkpoints(folder: Path) -> list[Path]:
    """The best.ckpt of each finished job of a `-m` sweep's folder (its summary.json says
    completed), in job order."""
    jobs = [RunDir(best.parent.parent) for best in folder.glob("*/checkpoints/best.ckpt")]
    finished = [job for job in jobs if (job.read_summary() or {}).get("status") == "completed"]
    return [job.best_ckpt for job in sorted(finished, key=lambda job: (len(job.path.name), job.path.name))]


def resolve_checkpoints(arg: str | list[str], outputs_root: str) -> list[Path]:
    """The checkpoints of an ensemble: `ckpt=[a,b,c]` (each as resolve_checkpoint reads it), or a
    sweep's folder (the best.ckpt of each of its jobs); anything else is one checkpoint."""
    if not isinstance(arg, str):
        paths = [resolve_checkpoint(str(a), outputs_root) for a in arg]
        if not paths:
            raise UserError("ckpt=[]: give at least one checkpoint")
        return paths
    folder = Path(arg).expanduser()
    if arg != "latest" and folder.is_dir() and not (folder / "checkpoints" / "best.ckpt").is_file():
        found = sweep_checkpoints(folder)
        if found:
            return found
    return [resolve_checkpoint(arg, outputs_root)]


def load_classifier_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint whose classifier head was trained (eval, predict); a self-supervised one is refused."""
    ckpt = load_checkpoint(path)
    if ckpt["objective"] != "supervised":
        raise UserError(
            f"{path} was pretrained with objective={ckpt['objective']} and has no trained classifier head; "
            f"finetune it first (mnist finetune ckpt=... finetune.strategy=linear for a linear probe)"
        )
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> Classifier:
    """Rebuild the classifier from the config saved in the checkpoint and load its weights (of a
    self-supervised checkpoint: the backbone, and a head that was never trained)."""
    model = build_model(OmegaConf.create(ckpt["config"]["model"]), ckpt["num_classes"])
    model.load_state_dict(ckpt["model"] if ckpt["objective"] == "supervised" else classifier_state(ckpt["model"]))
    return model


def inherit_config(cfg: DictConfig, ckpt: dict[str, Any], overrides: list[str]) -> None:
    """Make a finetune/eval config describe the checkpoint's model, and its data set unless the
    command line chose one: `dataset=...` picks another (whose normalization, when its config leaves
    it to the files, is the checkpoint's: the model's input must look as it did in training),
    `dataset.key=...` adjusts the saved one. The preprocessing of image files is the checkpoint's
    unless the command line sets it."""
    saved = ckpt["config"]
    if any(o.startswith("model=") for o in overrides) and cfg.model.name != saved["model"]["name"]:
        raise UserError(
            f"model={cfg.model.name} does not match the checkpoint, which holds a {saved['model']['name']}; "
            "drop model= (the model comes from the checkpoint)"
        )
    cfg.model = saved["model"]
    if not any(o.startswith("dataset=") for o in overrides):
        dotted = [o.removeprefix("dataset.") for o in overrides if o.startswith("dataset.")]
        # over the composed defaults: a checkpoint from an older mnist lacks the newer keys
        defaults = OmegaConf.to_container(cfg.dataset, resolve=True)
        cfg.dataset = OmegaConf.merge(defaults, saved["dataset"], OmegaConf.from_dotlist(dotted))
    for key in ("mean", "std"):
        if cfg.dataset[key] is None:
            cfg.dataset[key] = saved["dataset"][key]
    if "preprocess" in saved and not any(o.startswith("preprocess") for o in overrides):
        cfg.preprocess = OmegaConf.merge(cfg.preprocess, saved["preprocess"])
