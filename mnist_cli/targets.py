"""What a config group names with `_target_` (the optimizer, scheduler and model groups): the class
or function itself, and the group's other keys as its arguments."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_cli.errors import UserError


def knobs(cfg: DictConfig, *leave_out: str) -> dict[str, Any]:
    """A group's keys as plain Python arguments, without `_target_` and `leave_out`."""
    return {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in ("_target_", *leave_out)}


def target(cfg: DictConfig, group: str, get: Callable[[str], Any]) -> Any:
    """cfg._target_ imported with `get` (hydra.utils.get_class or get_method)."""
    name = cfg._target_
    try:
        return get(name)
    except Exception as e:  # Hydra's ImportError variants
        raise UserError(f"{group}._target_={name} cannot be imported ({e}); name an importable one") from None
