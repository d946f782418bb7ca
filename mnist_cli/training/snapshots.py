"""The checkpoints one Trainer.fit() writes and resumes from: best.ckpt, the measured weights of the
best epoch, and last.ckpt, everything needed to go on (weights, optimizer, scheduler, scaler, every
process's RNG states, the task's state, and the epoch in progress for a mid-epoch checkpoint).
Rank 0 writes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mnist_cli.errors import UserError
from mnist_cli.objectives.base import Task
from mnist_cli.run_dir import RunDir
from mnist_cli.training import distributed
from mnist_cli.training.checkpoint import save_checkpoint
from mnist_cli.training.fitting import Fitting
from mnist_cli.training.state import EpochProgress, TrainState


class Snapshots:
    def __init__(
        self,
        run: RunDir,
        parts: Fitting,
        info: dict[str, Any],
        task: Task,
        generator: torch.Generator,
        select: str,
        best_weights: Callable[[nn.Module], dict[str, torch.Tensor]],
    ):
        """`info`: what every checkpoint holds besides the training state (config, model name,
        class count, objective); `select`: the rule that picked best.ckpt's epoch."""
        self.run, self.parts, self.info, self.task = run, parts, info, task
        self.generator, self.select, self.best_weights = generator, select, best_weights

    def save(self, state: TrainState, improved: bool, current: EpochProgress | None = None) -> None:
        """best.ckpt when the epoch `improved`; always last.ckpt (with `current`, the epoch in
        progress, for a mid-epoch checkpoint)."""
        device = self.generator.device
        rng = {"torch": distributed.gather(torch.get_rng_state()), "generator": self.generator.get_state()}
        if device.type == "cuda":
            rng["cuda"] = distributed.gather(torch.cuda.get_rng_state(device))
        if not self.run.writable:
            return
        common = {**self.info, **state.checkpoint_fields(), "selected_by": self.select}
        if improved:
            save_checkpoint(self.run.best_ckpt, {**common, "model": self.best_weights(self.parts.measured)})
        in_progress = current.state_dict() if current is not None else None
        save_checkpoint(
            self.run.last_ckpt,
            {
                **common,
                **self.parts.state_dict(),
                "rng": rng,
                "in_progress": in_progress,
                "task": self.task.state_dict(),
            },
        )

    def restore(self, ckpt: dict[str, Any]) -> TrainState:
        """Load a last.ckpt into the parts, the task and the RNGs; the training state it saved."""
        rank, world = distributed.rank(), distributed.world_size()
        saved_world = len(ckpt["rng"]["torch"])
        if saved_world != world:
            raise UserError(
                f"this run was trained by {saved_world} process(es); "
                f"resume it with as many (torchrun --nproc_per_node={saved_world})"
            )
        self.parts.load_state_dict(ckpt)
        self.task.load_state_dict(ckpt.get("task", {}))
        torch.set_rng_state(ckpt["rng"]["torch"][rank])
        self.generator.set_state(ckpt["rng"]["generator"])
        device = self.generator.device
        if "cuda" in ckpt["rng"] and device.type == "cuda":
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"][rank], device)
        return TrainState(ckpt["epoch"], list(ckpt["history"]), ckpt["best_epoch"], ckpt["in_progress"])
