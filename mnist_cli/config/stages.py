"""The stage registry: each conf/stage/<name>.yaml describes its stage under `stage:` (help line,
runner module, metrics, whether it needs ckpt=, takes resume=, runs in one process). `mnist --help`,
the checks, validation and dispatch all read it; adding a stage is its runner and its YAML file.
Read with PyYAML alone, so `mnist --help` stays quick."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from mnist_cli.config.compose import config_dir


@dataclass(frozen=True)
class Stage:
    name: str
    help: str
    order: int  # where `mnist --help` lists it
    runner: str  # the module whose run(cfg, run, resume) does the work
    ckpt: str  # required (needs ckpt=) | refused (starts from scratch)
    resumable: bool  # takes resume=<run dir>
    one_process: bool  # refuses torchrun
    metrics: tuple[str, ...]  # the keys of its results that metric= may name


@cache
def stages() -> dict[str, Stage]:
    """Every stage, in --help order."""
    import yaml

    found = []
    for path in (config_dir() / "stage").glob("*.yaml"):
        entry = yaml.safe_load(path.read_text())["stage"]
        found.append(Stage(**{**entry, "metrics": tuple(entry["metrics"])}))
    return {stage.name: stage for stage in sorted(found, key=lambda s: s.order)}
