"""resume=<run dir>: the config a resumed run continues with (the one it saved, over this command's),
and the overrides it refuses because they would change what the run learns."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from mnist_cli.errors import UserError
from mnist_cli.run_dir import RunDir

# What a resumed run may change: where its files are and how it runs, not what it learns.
WHERE_AND_HOW = (
    "dataset.root",
    "dataset.download",
    "trainer.device",
    "trainer.num_threads",
    "trainer.log_every_steps",
    "outputs_root",
)


ABSENT = object()


def plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def same_value(cfg: DictConfig, saved: DictConfig, key: str) -> bool:
    """Whether an override of `key` leaves the saved run's value as it was (a checkpoint argument:
    whether it names the same file). A preset that is no key of the config (experiment=...) is
    never the same: its values would be silently ignored."""
    if OmegaConf.select(cfg, key, default=ABSENT) is ABSENT:
        return False
    given, before = plain(OmegaConf.select(cfg, key)), plain(OmegaConf.select(saved, key))
    if key in ("ckpt", "teacher") and isinstance(given, str):
        from mnist_cli.training.source import resolve_checkpoint

        return str(resolve_checkpoint(given, cfg.outputs_root)) == before
    return given == before


def resumed_config(cfg: DictConfig, run: RunDir, overrides: list[str]) -> tuple[DictConfig, dict[str, Any]]:
    """The config and last checkpoint of the run being resumed: its saved config, with this command's
    `overrides` (key=value) refused unless they only say where its files are and how it runs."""
    from mnist_cli.training.checkpoint import load_checkpoint, over_defaults  # torch: not for --help

    summary = run.read_summary() or {}
    if summary.get("status") == "completed":
        raise UserError(
            f"resume={run.path}: that run already finished; start a new one or finetune it with ckpt={run.path}"
        )
    ckpt = load_checkpoint(run.last_ckpt)
    saved = OmegaConf.create(over_defaults(OmegaConf.to_container(cfg, resolve=True), ckpt["config"]))
    if saved.stage.name != cfg.stage.name:
        raise UserError(
            f"resume={run.path} is a {saved.stage.name} run; resume it with `mnist {saved.stage.name} resume=...`"
        )
    original = set(summary.get("overrides", []))  # the command line that started the run
    changed = []
    for override in overrides:
        key = override.lstrip("+~").partition("=")[0]
        if override in original or key in ("resume", "stage") or same_value(cfg, saved, key):
            continue
        if key in WHERE_AND_HOW:
            OmegaConf.update(saved, key, plain(OmegaConf.select(cfg, key)), force_add=True)
        else:
            before = plain(OmegaConf.select(saved, key, default="not given"))
            changed.append(f"{override} (saved: {before})")
    if changed:
        raise UserError(
            f"resume continues a run with its saved config, and these overrides change it: {'; '.join(changed)}; "
            f"drop them (only {', '.join(WHERE_AND_HOW)} may differ)"
        )
    saved.resume = cfg.resume
    return saved, ckpt
