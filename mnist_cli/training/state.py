"""What training remembers between steps and across a resume: the run's progress (TrainState) and
the epoch in progress (EpochProgress), both saved in last.ckpt; how long the run is (Length); and
the check that its loss stays finite."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig

from mnist_cli.errors import UserError
from mnist_cli.training import distributed


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    best_epoch: int
    best_val_acc: float
    stopped_early: bool = False  # by early stopping (no better val accuracy for its patience)
    stopped_at_target: bool = False  # by trainer.stop_at_target


@dataclass
class TrainState:
    """What a checkpoint remembers of training so far."""

    epoch: int = 0  # epochs completed
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0  # the epoch whose weights best.ckpt holds (0: none yet)
    in_progress: dict[str, Any] | None = None  # EpochProgress.state_dict() of a mid-epoch checkpoint

    @property
    def best_val_acc(self) -> float:
        return self.history[self.best_epoch - 1]["val_acc"] if self.best_epoch else -1.0

    def record(self, row: dict[str, Any], select: str) -> bool:
        """Add an epoch's metrics; True when its weights become best.ckpt's, by the rule `select`:
        val_acc (the highest; ties go to the later epoch, which trained longer at a lower lr),
        val_loss (the lowest: a smoother measure than the accuracy of a small split) or last."""
        self.history.append(row)
        self.epoch = row["epoch"]
        best = self.history[self.best_epoch - 1] if self.best_epoch else None
        improved = (
            best is None
            or select == "last"
            or (select == "val_acc" and row["val_acc"] >= best["val_acc"])
            or (select == "val_loss" and row["val_loss"] <= best["val_loss"])
        )
        if improved:
            self.best_epoch = row["epoch"]
        return improved

    def checkpoint_fields(self) -> dict[str, Any]:
        """What every checkpoint of the run keeps of it."""
        return {
            "epoch": self.epoch,
            "history": self.history,
            "best_epoch": self.best_epoch,
            "best_val_acc": self.best_val_acc,
        }

    def epochs_without_progress(self) -> int:
        """Epochs since the first one at the top validation accuracy (a tie is no progress)."""
        top = max(row["val_acc"] for row in self.history)
        return self.epoch - next(row["epoch"] for row in self.history if row["val_acc"] == top)


@dataclass
class EpochProgress:
    """The epoch being trained: its data order, the optimizer steps done and the running sums
    (this rank's). Mid-epoch checkpoints save it, so a resumed run goes on at the next step of the
    same order."""

    order: torch.Tensor
    loss_sum: torch.Tensor
    correct: torch.Tensor
    step: int = 0
    seen: int = 0
    time_s: float = 0.0
    tallies: dict[str, torch.Tensor] = field(default_factory=dict)  # the task's own counts (Task.tallies)

    @classmethod
    def start(cls, order: torch.Tensor) -> EpochProgress:
        return cls(order, torch.zeros((), device=order.device), torch.zeros((), device=order.device))

    def add(self, loss: torch.Tensor, correct: torch.Tensor, images: int, tallies: dict[str, torch.Tensor]) -> None:
        """Count a micro-batch (its mean loss, correct answers, size and the task's tallies) on the device."""
        self.loss_sum += loss.detach() * images
        self.correct += correct
        self.seen += images
        for name, count in tallies.items():
            self.tallies[name] = self.tallies.get(name, 0) + count

    def state_dict(self) -> dict[str, Any]:
        return {
            "order": self.order.cpu(),
            "loss_sum": self.loss_sum.cpu(),
            "correct": self.correct.cpu(),
            "step": self.step,
            "seen": self.seen,
            "time_s": self.time_s,
            "tallies": {name: count.cpu() for name, count in self.tallies.items()},
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: torch.device) -> EpochProgress:
        return cls(
            state["order"].to(device),
            state["loss_sum"].to(device),
            state["correct"].to(device),
            state["step"],
            state["seen"],
            state["time_s"],
            {name: count.to(device) for name, count in state.get("tallies", {}).items()},
        )

    def totals(self) -> tuple[float, float, int]:
        """Mean loss, accuracy and images seen so far, summed over all ranks (a host sync)."""
        sums = distributed.all_reduce(
            torch.stack(
                [self.loss_sum, self.correct.float(), torch.tensor(float(self.seen), device=self.loss_sum.device)]
            )
        )
        loss_sum, correct, seen = sums.tolist()
        return loss_sum / seen, correct / seen, int(seen)

    def tally_totals(self) -> dict[str, float | list[float]]:
        """The task's tallies of the epoch (a number each, or a list for a tally of several
        counts), summed over all ranks (a host sync)."""
        names = sorted(self.tallies)
        if not names:
            return {}
        sums = distributed.all_reduce(torch.cat([self.tallies[name].float().reshape(-1) for name in names])).tolist()
        totals, at = {}, 0
        for name in names:
            size = self.tallies[name].numel()
            totals[name] = sums[at] if self.tallies[name].dim() == 0 else sums[at : at + size]
            at += size
        return totals


@dataclass(frozen=True)
class Length:
    """How long a run trains: `epochs` epochs of `steps_per_epoch` optimizer steps, `total_steps`
    in all (with trainer.max_steps, the last epoch ends where the budget does)."""

    epochs: int
    steps_per_epoch: int
    total_steps: int

    @staticmethod
    def batch(cfg: DictConfig) -> int:
        """Images per optimizer step, over all ranks."""
        return cfg.batch_size * cfg.accumulate_steps

    @staticmethod
    def of(cfg: DictConfig, n_train: int) -> Length:
        """The run's length for `n_train` training images (cfg: the trainer's config): optimizer steps
        of full batches only (BatchNorm needs more than one image), at least one an epoch;
        trainer.max_steps steps when it is set, else trainer.epochs epochs, or as many more whole
        epochs as make trainer.min_steps steps."""
        batch = Length.batch(cfg)
        if cfg.accumulate_steps > 1 and batch > n_train:
            raise UserError(
                f"trainer.batch_size x trainer.accumulate_steps = {batch} images per step, "
                f"more than the {n_train} training images; lower one of them"
            )
        steps = max(1, n_train // batch)
        if cfg.max_steps:
            return Length(math.ceil(cfg.max_steps / steps), steps, cfg.max_steps)
        epochs = max(cfg.epochs, math.ceil(cfg.min_steps / steps))
        return Length(epochs, steps, epochs * steps)

    def steps_in(self, epoch: int) -> int:
        """The optimizer steps of epoch `epoch` (1-based)."""
        return min(self.steps_per_epoch, self.total_steps - (epoch - 1) * self.steps_per_epoch)

    def steps_before(self, epoch: int) -> int:
        """The optimizer steps of the epochs before `epoch` (1-based)."""
        return (epoch - 1) * self.steps_per_epoch


def check_finite(loss: float, epoch: int, step: int) -> None:
    """Stop, saying what to change, when the training loss is NaN or infinite."""
    if loss != loss or loss in (float("inf"), float("-inf")):
        raise UserError(
            f"the training loss became {loss} in epoch {epoch} by step {step}; lower optimizer.lr, "
            "set trainer.grad_clip=1.0, or use trainer.precision=fp32 (the last good checkpoint is kept)"
        )
