"""Learning-rate schedules: each is a function of the step that returns the multiple of the
optimizer's lr to use. conf/scheduler/<name>.yaml names one with `_target_` and gives its knobs;
every schedule gets the same warmup (scheduler.warmup_epochs) in front. A new schedule is a
function here (or anywhere importable) and a YAML file.

Each function takes (step, steps, steps_per_epoch, **knobs): the 0-based step after the warmup,
the number of steps after the warmup, and the steps in an epoch.
"""

from __future__ import annotations

import math


def constant(step: int, steps: int, steps_per_epoch: int) -> float:
    return 1.0


def step_decay(step: int, steps: int, steps_per_epoch: int, step_epochs: float, gamma: float) -> float:
    """Multiply by gamma every step_epochs epochs."""
    return gamma ** math.floor(step / (step_epochs * steps_per_epoch))


def cosine(step: int, steps: int, steps_per_epoch: int, min_lr_ratio: float) -> float:
    """From 1 down to min_lr_ratio along half a cosine."""
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * step / steps))


def onecycle(
    step: int, steps: int, steps_per_epoch: int, pct_start: float, div_factor: float, final_div_factor: float
) -> float:
    """Up from 1 / div_factor to 1 over the first pct_start of training, then down to
    1 / (div_factor * final_div_factor), both along half cosines."""
    progress = step / steps
    start, end = 1 / div_factor, 1 / (div_factor * final_div_factor)
    if progress < pct_start:
        return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * progress / pct_start))
    return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * (progress - pct_start) / (1 - pct_start)))
