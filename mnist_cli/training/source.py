"""What `ckpt=` names, each file loaded once: one checkpoint (a run directory's best.ckpt, a .ckpt
file, or `latest`: the newest best.ckpt under outputs_root) or an ensemble of several (ckpt=[a,b,c],
or a sweep's folder: the best.ckpt of each finished job); the config it describes and its model.
Every stage that starts from a checkpoint starts here: finetune (and its teacher=), eval, predict,
serve, explain and export."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from mnist_cli.errors import UserError
from mnist_cli.models import build_model
from mnist_cli.models.calibrated import Calibrated
from mnist_cli.models.classifier import Classifier, classifier_state
from mnist_cli.models.ensemble import Ensemble
from mnist_cli.run_dir import RunDir
from mnist_cli.training.checkpoint import load_checkpoint


@dataclass(frozen=True)
class Source:
    paths: list[Path]
    checkpoints: list[dict[str, Any]]  # each path's, as load_checkpoint read it

    @classmethod
    def load(cls, arg: str | Sequence[str], outputs_root: str) -> Source:
        """The checkpoint(s) of ckpt=`arg` (a run dir, a .ckpt file, latest, a list, a sweep's folder)."""
        paths = resolve_checkpoints(arg if isinstance(arg, str) else [str(a) for a in arg], outputs_root)
        return cls(paths, [load_checkpoint(path) for path in paths])

    @property
    def objective(self) -> str:
        """What it was trained for: supervised (a trained classifier head), or a self-supervised objective."""
        return self.checkpoints[0]["objective"]

    @property
    def name(self) -> str:
        """The checkpoint's path, or what the ensemble is."""
        return str(self.paths[0]) if len(self.paths) == 1 else f"an ensemble of {len(self.paths)} checkpoints"

    def one(self, stage: str, key: str = "ckpt") -> Source:
        """This source, which must be one checkpoint (`key`= names it)."""
        if len(self.paths) > 1:
            raise UserError(
                f"{stage} starts from one checkpoint, and {key}= names {len(self.paths)}; give one of them, "
                f"e.g. {key}={self.paths[0].parent.parent}"
            )
        return self

    def shared(self) -> Source:
        """This source, whose checkpoints (an ensemble's members) must share their data set."""
        first = self.checkpoints[0]["config"]["dataset"]
        for path, ckpt in zip(self.paths[1:], self.checkpoints[1:]):
            data = ckpt["config"]["dataset"]
            if [list(data["classes"]), data["mean"], data["std"]] != [
                list(first["classes"]),
                first["mean"],
                first["std"],
            ]:
                raise UserError(
                    f"{path} was trained on {data['name']} (classes {list(data['classes'])}, mean {data['mean']}, "
                    f"std {data['std']}), {self.paths[0]} on {first['name']}: an ensemble's members share their data set"
                )
        return self

    def trained(self) -> Source:
        """This source, whose classifier heads must have been trained (a self-supervised one's was not)."""
        for path, ckpt in zip(self.paths, self.checkpoints):
            if ckpt["objective"] != "supervised":
                raise UserError(
                    f"{path} was pretrained with objective={ckpt['objective']} and has no trained classifier head; "
                    "finetune it first (mnist finetune ckpt=... finetune.strategy=linear for a linear probe)"
                )
        return self

    def config(self, cfg: DictConfig, overrides: list[str], classes_from_data: bool = False) -> dict[str, Any]:
        """What a run's config takes from the checkpoint, for StageContext.settle: `ckpt`, the
        resolved path (or paths); `model`, the checkpoint's; `dataset`, the checkpoint's unless the
        command line chose one (`dataset=...` picks another, whose normalization, when its config
        leaves it to the files, is the checkpoint's: the model's input must look as it did in
        training; `dataset.key=...` adjusts the saved one); `preprocess`, the checkpoint's unless
        the command line sets it. A data set that names no classes (a folder of images) takes the
        model's, unless `classes_from_data` (finetune: the folders name the new head's classes)."""
        saved = self.shared().checkpoints[0]["config"]
        if any(o.startswith("model=") for o in overrides) and cfg.model.name != saved["model"]["name"]:
            raise UserError(
                f"model={cfg.model.name} does not match the checkpoint, which holds a {saved['model']['name']}; "
                "drop model= (the model comes from the checkpoint)"
            )
        composed = OmegaConf.to_container(cfg.dataset, resolve=True)
        if any(o.startswith("dataset=") for o in overrides):
            dataset = OmegaConf.create(composed)
        else:  # over the composed defaults: a checkpoint from an older mnist lacks the newer keys
            dotted = [o.removeprefix("dataset.") for o in overrides if o.startswith("dataset.")]
            dataset = OmegaConf.merge(composed, saved["dataset"], OmegaConf.from_dotlist(dotted))
        for key in ("mean", "std"):
            dataset[key] = saved["dataset"][key] if dataset[key] is None else dataset[key]
        if dataset.classes is None and not classes_from_data:  # a folder of images, labelled with the model's classes
            dataset.classes = saved["dataset"]["classes"]
        preprocess = cfg.preprocess
        if "preprocess" in saved and not any(o.startswith("preprocess") for o in overrides):
            preprocess = OmegaConf.merge(cfg.preprocess, saved["preprocess"])
        paths = [str(p) for p in self.paths]
        return {
            "ckpt": paths[0] if len(paths) == 1 else paths,
            "model": saved["model"],
            "dataset": dataset,
            "preprocess": preprocess,
        }

    def model(self, calibrate: bool = False) -> nn.Module:
        """The checkpoint's model (an ensemble's: the Ensemble of its members), each with the
        temperature its training fitted when `calibrate` and there is one (models/calibrated.py)."""
        models = [model_from_checkpoint(ckpt) for ckpt in self.checkpoints]
        models = [
            Calibrated(model, ckpt["temperature"]) if calibrate and "temperature" in ckpt else model
            for model, ckpt in zip(models, self.checkpoints)
        ]
        return models[0] if len(models) == 1 else Ensemble(models)


def model_from_checkpoint(ckpt: dict[str, Any]) -> Classifier:
    """The classifier rebuilt from the config saved in a checkpoint, with its weights (of a
    self-supervised checkpoint: the backbone, and a head that was never trained)."""
    model = build_model(OmegaConf.create(ckpt["config"]["model"]), ckpt["num_classes"])
    model.load_state_dict(ckpt["model"] if ckpt["objective"] == "supervised" else classifier_state(ckpt["model"]))
    return model


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
                f"(e.g. ckpt={path / '0'}), or the whole folder to `mnist eval`, `predict` or `serve` as an ensemble"
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
