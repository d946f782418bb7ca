"""The words after `mnist <stage>`: Hydra's flags (with their values) and key=value overrides."""

from __future__ import annotations

# Hydra's flags that take a value; --info takes one only when it is one of INFO_TOPICS.
FLAGS_WITH_VALUE = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
}
INFO_TOPICS = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Hydra's flags (with their values) and the key=value overrides, each in their order."""
    flags, overrides = [], []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            flags.append(arg)
            takes_value = arg in FLAGS_WITH_VALUE or (
                arg in ("--info", "-i") and i + 1 < len(args) and args[i + 1] in INFO_TOPICS
            )
            if takes_value and i + 1 < len(args):
                flags.append(args[i + 1])
                i += 1
        else:
            overrides.append(arg)
        i += 1
    return flags, overrides


def hydra_argv(stage: str, args: list[str]) -> list[str]:
    """Hydra's arguments for `mnist <stage> ARGS`: its flags first (its parser does not take flags
    after overrides), then the stage, then the overrides in their order."""
    flags, overrides = split_args(args)
    return [*flags, f"stage={stage}", *overrides]


def is_sweep(args: list[str]) -> bool:
    return any(arg in ("-m", "--multirun") for arg in args)
