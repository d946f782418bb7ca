"""The checks made before Hydra runs, on the command line alone and without importing torch, so
that a mistake ends in one `mnist: error:` line before any run directory exists. Each raises
UserError with what is wrong and how to fix it."""

from __future__ import annotations

import os
from pathlib import Path

from mnist_cli.config.arguments import CommandLine
from mnist_cli.config.compose import compose_config, groups, options
from mnist_cli.errors import UserError


def check_resume_arg(overrides: tuple[str, ...]) -> None:
    """Refuse `resume=<dir>` before Hydra would create that directory."""
    for arg in overrides:
        if arg.startswith("resume=") and arg != "resume=null":
            path = Path(arg.removeprefix("resume=")).expanduser()
            if not (path / "checkpoints" / "last.ckpt").is_file():
                raise UserError(
                    f"resume={path}: not a run directory with checkpoints/last.ckpt; "
                    "pass a directory under outputs/pretrain or outputs/finetune"
                )


def check_group_choices(line: CommandLine) -> None:
    """Refuse `group=option` for an option that has no YAML file, naming the ones that exist.
    Sweep syntax (`a,b`) is checked value by value; Hydra's sweep functions and --config-dir
    (which may add options) are left to Hydra."""
    if line.config_dirs:
        return
    for arg in line.overrides:
        group, sep, value = arg.lstrip("+~").partition("=")
        if not sep or group not in groups() or "(" in value:
            continue
        for choice in value.split(","):
            if choice not in options(group):
                raise UserError(
                    f"unknown {group} '{choice}': choose one of {', '.join(options(group))} (see `mnist --help`)"
                )


# Hydra plugins that presets need, and the extra that installs each.
PLUGINS = {
    "hydra/sweeper/optuna": ("hparams_search=optuna", "optuna"),
    "hydra/launcher/submitit": ("launcher=submitit_local|slurm", "cluster"),
}


def first_job(overrides: list[str]) -> list[str]:
    """The overrides of a sweep's first job: the first value of each `a,b`/range sweep; other
    sweeps (glob, interval) are left out, for Hydra and the sweeper to check."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    job = []
    for text, override in zip(overrides, OverridesParser.create().parse_overrides(overrides)):
        if not override.is_sweep_override():
            job.append(text)
            continue
        try:
            job.append(f"{override.get_key_element()}={next(iter(override.sweep_string_iterator()))}")
        except HydraException:
            pass
    return job


def one_line(error: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages as one line, without the internals."""
    details = ("full_key:", "object_type", "reference_type", "See https://", "Config search path", "provider=")
    lines = [line.strip() for line in str(error).splitlines() if line.strip() and not line.strip().startswith(details)]
    cause = [
        line.strip()
        for line in str(error.__cause__ or "").splitlines()
        if line.strip() and not line.strip().startswith(details)
    ]
    if cause:
        lines[:1] = [f"{lines[0].rstrip('.')}: {cause[0]}"] if lines else cause[:1]
    key = getattr(error, "full_key", None)  # OmegaConf names the key whose value failed
    return (f"{key}: " if key else "") + (" ".join(lines) or type(error).__name__)


def check_writable(root: Path) -> None:
    """Refuse an outputs_root that cannot be created or written, without creating it."""
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    problem = (
        "is not a folder" if not existing.is_dir() else "is not writable" if not os.access(existing, os.W_OK) else None
    )
    if problem:
        raise UserError(
            f"outputs_root={root}: {existing} {problem}, so no run directory can be made there; choose another with outputs_root=..."
        )


def check_config(line: CommandLine) -> None:
    """Compose and validate the config the way the job will, so a typo, a bad value or an
    unwritable outputs_root ends in one line before Hydra creates a run directory. The job itself
    validates again only in a sweep, whose jobs' values this check does not see."""
    check_group_choices(line)
    check_resume_arg(line.overrides)
    if line.hydra_words:
        return  # --info, --hydra-help: Hydra's own words, no config of ours to check
    from omegaconf import OmegaConf

    from mnist_cli.config.validate import validate

    stage, sweep = line.stage, line.sweep
    overrides = [f"stage={stage}", *line.overrides]
    for group in ("hparams_search", "launcher"):
        if not sweep and any(o.startswith(f"{group}=") and o != f"{group}=null" for o in overrides):
            raise UserError(f"{group}=... is for sweeps: add -m (mnist {stage} -m {group}=...)")
    try:
        if sweep:  # each job validates its own values; a bad one fails that job alone
            overrides = first_job(overrides)
        if line.config_dirs:
            found = ",".join("file://" + str(Path(d).expanduser().resolve()) for d in line.config_dirs)
            overrides.append(f"hydra.searchpath=[{found}]")
        cfg = compose_config(*overrides)
        if not sweep:
            validate(cfg)  # first: a bad finetune.strategy is named, not the optimizer.lr that reads it
        OmegaConf.to_container(cfg, resolve=True)  # every ${...} resolves
        if cfg.resume is None:
            check_writable(Path(cfg.outputs_root).expanduser())
    except UserError:
        raise
    except Exception as e:  # Hydra's and OmegaConf's composition errors
        message = one_line(e)
        missing = [
            (preset, extra) for plugin, (preset, extra) in PLUGINS.items() if f"Could not find '{plugin}" in message
        ]
        if missing:
            preset, extra = missing[0]
            message = f"{preset} needs a Hydra plugin that is not installed: pip install 'mnist-cli[{extra}]'"
        elif message.startswith("Ambiguous value for argument"):
            given = message.split("'")[1]
            message = f"{given} has several values: add -m to sweep over them, or write a list as [a,b]"
        elif message.startswith("Could not override"):
            message += f" (`mnist {stage} --cfg job` lists the keys)"
        raise UserError(message) from None
