"""Time to a target accuracy (trainer.target_accuracy): the first validation, at an epoch's end or
at a check inside it (every trainer.check_every_steps steps), whose accuracy reaches the target.
Its step and the seconds since the run started go into that epoch's metrics row as `target_step`
and `target_elapsed_s`; with trainer.stop_at_target the epoch ends at that check and the run there."""

from __future__ import annotations

from typing import Any

from mnist_cli.evaluation.inference import EvalResult


class TargetWatch:
    def __init__(self, target: float | None, every_steps: int, stop_at_target: bool, history: list[dict[str, Any]]):
        """`history`: the rows of the epochs already done (a resumed run may have reached it in one)."""
        self.target, self.stop_at_target = target, stop_at_target
        self.checks_inside = target is not None and bool(every_steps)
        self.reached = any("target_step" in row for row in history)
        self.found: dict[str, Any] = {}  # the epoch in progress: where it reached the target
        self.ending: EvalResult | None = None  # the check that ended the epoch in progress

    def start_epoch(self) -> None:
        self.found, self.ending = {}, None

    def inside(self, result: EvalResult, step: int, elapsed_s: float) -> bool:
        """A check inside the epoch at the run's `step`: True ends the epoch there."""
        if not self.note(result, step, elapsed_s):
            return False
        self.ending = result if self.stop_at_target else None
        return self.stop_at_target

    def note(self, result: EvalResult, step: int, elapsed_s: float) -> bool:
        """A validation at the run's `step`: True when it is the first to reach the target."""
        if self.target is None or self.reached or result.acc < self.target:
            return False
        self.reached = True
        self.found = {"target_step": step, "target_elapsed_s": elapsed_s}
        return True

    def stops(self, row: dict[str, Any], total_steps: int) -> bool:
        """The run ends after the epoch of `row`: it reached the target before the run's last step."""
        return self.stop_at_target and "target_step" in row and row["target_step"] < total_steps
