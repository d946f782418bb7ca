"""The words after `mnist <stage>`, read once: Hydra's flags (with their values) and the key=value
overrides, checked for what mnist does not take, and put back in the order Hydra's parser wants."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from mnist_cli.errors import UserError

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
# Flags that make Hydra compose another config than mnist's; --config-dir (more options for the
# groups) is the way to bring your own configs.
OTHER_CONFIG_FLAGS = {"--config-path", "-cp", "--config-name", "-cn", "--experimental-rerun"}
# Flags after which Hydra prints words of its own (not the config) and exits: nothing to check.
HYDRA_WORDS = {"--hydra-help", "--info", "-i", "--help", "-h"}


@dataclass(frozen=True)
class CommandLine:
    """`mnist <stage> [args]`, read: the stage, Hydra's flags with their values, the overrides."""

    stage: str
    flags: tuple[str, ...]
    overrides: tuple[str, ...]

    @property
    def names(self) -> set[str]:
        """The flags given, without their values (--config-dir=DIR: --config-dir)."""
        return {flag.partition("=")[0] for flag in self.flags if flag.startswith("-")}

    @property
    def sweep(self) -> bool:
        return bool(self.names & {"-m", "--multirun"})

    @property
    def hydra_words(self) -> bool:
        """Whether Hydra only prints words of its own (--info, its help) and runs nothing."""
        return bool(self.names & HYDRA_WORDS)

    @property
    def config_dirs(self) -> list[str]:
        pairs = zip(self.flags, self.flags[1:])
        return [value for flag, value in pairs if flag in ("--config-dir", "-cd")] + [
            flag.partition("=")[2] for flag in self.flags if flag.startswith("--config-dir=")
        ]

    def with_overrides(self, *more: str) -> CommandLine:
        return replace(self, overrides=(*self.overrides, *more))

    def hydra_argv(self) -> list[str]:
        """Hydra's arguments: its flags first (its parser takes no flag after an override), then the
        stage, then the overrides in their order. --info without a topic gets `all`, so that the
        stage is not read as its topic; --hydra-help (Hydra's help on itself) takes no overrides."""
        flags = list(self.flags)
        for i, flag in enumerate(flags):
            if flag in ("--info", "-i") and (i + 1 == len(flags) or flags[i + 1] not in INFO_TOPICS):
                flags.insert(i + 1, "all")
                break
        if "--hydra-help" in self.names:
            return flags
        return [*flags, f"stage={self.stage}", *self.overrides]


def expand_home(override: str) -> str:
    """key=~/path as a shell expands ~ in VAR=~/path; Hydra's grammar refuses ~ in a value."""
    key, sep, value = override.partition("=")
    if sep and value.startswith("~") and not key.startswith("~"):
        return f"{key}={os.path.expanduser(value)}"
    return override


def read_command_line(stage: str, args: list[str]) -> CommandLine:
    """Split `args` into Hydra's flags and the overrides (each in their order), refusing in one line
    the flags mnist does not take and the ones that do not go together."""
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
            overrides.append(expand_home(arg))
        i += 1
    line = CommandLine(stage, tuple(flags), tuple(overrides))
    names = line.names
    if names & OTHER_CONFIG_FLAGS:
        raise UserError(
            f"{sorted(names & OTHER_CONFIG_FLAGS)[0]} is not supported: mnist composes its own conf/; "
            "add your own options with --config-dir DIR (DIR/<group>/<option>.yaml)"
        )
    if names & {"--shell-completion", "-sc"}:
        raise UserError(
            "shell completion is not supported: `mnist --help` lists the stages, `mnist <stage> --help` their keys"
        )
    printed = [value for flag, value in zip(flags, flags[1:]) if flag in ("--cfg", "-c")]
    if "--resolve" in names and printed != ["job"]:
        # (resolving hydra's part would name, and so make, a run directory for a job that never runs)
        raise UserError(f"--resolve resolves the job's config that --cfg job prints: mnist {stage} --cfg job --resolve")
    if line.sweep and names & {"--cfg", "-c"}:
        raise UserError("-m and --cfg do not go together: use one of them")
    for directory in line.config_dirs:
        if not Path(directory).expanduser().is_dir():
            raise UserError(
                f"--config-dir {directory}: no such folder; give the folder that holds <group>/<option>.yaml"
            )
    return line
