"""Building what a config group option names with `_target_` (the model, optimizer and schedule,
the objective, the semi-supervised method, the tracker, the data set's reader, the stage's run):
Hydra's instantiate, called with the arguments that come from the run, its errors said in one line."""

from __future__ import annotations

import inspect
from typing import Any

from omegaconf import DictConfig

from mnist_cli.errors import UserError


def build(node: DictConfig, *args: Any, **kwargs: Any) -> Any:
    """node's `_target_` called with node's other keys (as plain Python values) and `args`/`kwargs`.
    A target that cannot be imported, or that does not take these arguments, is a UserError naming
    the key to fix; what the target itself raises goes through unchanged."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    key = node._get_full_key(None) or "config"
    if "_target_" not in node:
        raise UserError(f"{key}._target_ is not set: name what builds it (see `mnist <stage> --help {key}`)")
    try:
        made = instantiate(node, _partial_=True, _convert_="all")
    except InstantiationException as e:
        raise UserError(
            f"{key}._target_={node.get('_target_')} cannot be imported ({str(e).splitlines()[0]}); name an importable one"
        ) from None
    try:
        inspect.signature(made.func).bind(*made.args, *args, **{**made.keywords, **kwargs})
    except TypeError as e:
        raise UserError(f"{key}: {node._target_} does not take these arguments ({e}); fix the {key}.* values") from None
    return made(*args, **kwargs)
