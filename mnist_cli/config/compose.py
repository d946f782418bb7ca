"""The config folder (conf/, shipped as mnist_cli.conf): its groups and their options, read from
the folder itself, and composing a config the way `mnist` does."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

# Folders of conf/ that are not groups a person picks with group=option: the stage is picked by
# the command's first word, hydra/ configures Hydra itself.
NOT_PICKED = ("hydra", "stage")


def config_dir() -> Path:
    return Path(str(resources.files("mnist_cli.conf")))


@cache
def groups() -> tuple[str, ...]:
    """The config groups a person picks from, in name order."""
    return tuple(
        sorted(
            p.name for p in config_dir().iterdir() if p.is_dir() and p.name not in NOT_PICKED and any(p.glob("*.yaml"))
        )
    )


def options(group: str) -> list[str]:
    """The options of a group: its YAML files."""
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def compose_config(*overrides: str):
    """The config `mnist` composes for these overrides, without running anything (for tests,
    benchmarks and notebooks)."""
    from hydra import compose, initialize_config_module

    from mnist_cli.config.resolvers import register_resolvers

    register_resolvers()
    with initialize_config_module(config_module="mnist_cli.conf", version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))
