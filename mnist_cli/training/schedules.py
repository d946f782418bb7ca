"""Learning-rate schedules: the multiple of the optimizer's lr at each optimizer step.
conf/scheduler/<name>.yaml names the function here that makes one with `_target_`, its other keys
being the function's arguments; every schedule has the same linear warmup (scheduler.warmup_epochs) in front. A new schedule
is a function here (or anywhere importable) and a YAML file.

Each schedule's shape is a function of (step, steps, steps_per_epoch): the 0-based step after the
warmup, the number of steps after the warmup, and the steps in an epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

Shape = Callable[[int, int, int], float]


@dataclass(frozen=True)
class Schedule:
    warmup_epochs: float  # a linear ramp from 0 over this many epochs (may be fractional), then `shape`
    shape: Shape

    def __call__(self, step: int, total_steps: int, steps_per_epoch: int) -> float:
        """The multiple of the optimizer's lr at `step` (0-based) of `total_steps`."""
        warmup = round(self.warmup_epochs * steps_per_epoch)
        if step < warmup:
            return (step + 1) / warmup
        return self.shape(step - warmup, max(1, total_steps - warmup), steps_per_epoch)


def constant(warmup_epochs: float) -> Schedule:
    return Schedule(warmup_epochs, lambda step, steps, steps_per_epoch: 1.0)


def step_decay(warmup_epochs: float, step_epochs: float, gamma: float) -> Schedule:
    """Multiply by gamma every step_epochs epochs."""
    return Schedule(warmup_epochs, lambda step, steps, per_epoch: gamma ** math.floor(step / (step_epochs * per_epoch)))


def cosine(warmup_epochs: float, min_lr_ratio: float) -> Schedule:
    """From 1 down to min_lr_ratio along half a cosine."""

    def shape(step: int, steps: int, steps_per_epoch: int) -> float:
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * step / steps))

    return Schedule(warmup_epochs, shape)


def onecycle(warmup_epochs: float, pct_start: float, div_factor: float, final_div_factor: float) -> Schedule:
    """Up from 1 / div_factor to 1 over the first pct_start of training, then down to
    1 / (div_factor * final_div_factor), both along half cosines."""
    start, end = 1 / div_factor, 1 / (div_factor * final_div_factor)

    def shape(step: int, steps: int, steps_per_epoch: int) -> float:
        progress = step / steps
        if progress < pct_start:
            return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * progress / pct_start))
        return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * (progress - pct_start) / (1 - pct_start)))

    return Schedule(warmup_epochs, shape)
