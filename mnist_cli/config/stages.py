"""The stages for the command line: each conf/stage/<name>.yaml describes its stage under `stage:`
(help line, the function that runs it, metrics, whether it needs ckpt=, takes resume=, runs in one
process). `mnist --help` and the checks before Hydra read them here, with PyYAML alone, so that
`mnist --help` stays quick; the job runs the composed config's `stage.run`. Adding a stage is its
module in stages/ and its YAML file."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from mnist_cli.config.compose import config_dir


@dataclass(frozen=True)
class Stage:
    name: str
    help: str
    order: int  # where `mnist --help` lists it
    ckpt: str  # required (needs ckpt=) | refused (starts from scratch) | optional
    resumable: bool  # takes resume=<run dir>
    one_process: bool  # refuses torchrun
    metrics: tuple[str, ...]  # the keys of its results that metric= may name
    groups: tuple[str, ...]  # the config groups it reads


@cache
def stages() -> dict[str, Stage]:
    """Every stage, in --help order."""
    import yaml

    found = []
    for path in (config_dir() / "stage").glob("*.yaml"):
        entry = yaml.safe_load(path.read_text())["stage"]
        fields = {key: entry[key] for key in Stage.__annotations__}
        found.append(Stage(**fields | {"metrics": tuple(entry["metrics"]), "groups": tuple(entry["groups"])}))
    return {stage.name: stage for stage in sorted(found, key=lambda s: s.order)}
