"""The one trainer every training stage uses: epochs of optimizer steps with validation after each,
mixed precision, gradient accumulation and clipping, early stopping, best/last checkpoints and
resuming. What is learned is the task's business (objectives/): the loop asks it for a batch's loss and
for the validation measure.

The data lives on the training device as uint8 tensors; each step indexes its batches out of a
device-side permutation. Running loss and accuracy are summed on the device and read back every
`log_every_steps` steps, not every step.

Under torchrun each rank trains on its rows of every batch (distributed.py); rank 0 writes.
A checkpoint can be taken mid-epoch (every `checkpoint_every_steps` steps, and on SIGINT/SIGTERM):
it holds the epoch's order and running sums, so a resumed run takes the very steps it would have
(snapshots.py). Time to a target accuracy is watched by target.py.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig
from rich.progress import Progress
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from mnist_cli.data.split import Split
from mnist_cli.errors import Interrupted
from mnist_cli.evaluation.inference import EvalResult
from mnist_cli.objectives.base import Batch, Task
from mnist_cli.run_dir import RunDir
from mnist_cli.training import distributed
from mnist_cli.training.fitting import Fitting
from mnist_cli.training.interrupts import StopRequest
from mnist_cli.training.runtime import autocast, pick_precision
from mnist_cli.training.snapshots import Snapshots
from mnist_cli.training.state import EpochProgress, FitResult, Length, TrainState, check_finite
from mnist_cli.training.target import TargetWatch

log = logging.getLogger(__name__)


class Trainer:
    def __init__(
        self,
        cfg: DictConfig,
        device: torch.device,
        task: Task,
        progress: Callable[[bool], Progress] = lambda shown: Progress(disable=True),
        best_weights: Callable[[nn.Module], dict[str, torch.Tensor]] = lambda model: model.state_dict(),
    ):
        """`progress(shown)`: the live bar of each epoch (its fields: loss, acc); `best_weights`:
        the state_dict best.ckpt keeps of the measured model (e.g. LoRA adapters merged in)."""
        self.cfg, self.device, self.task = cfg, device, task
        self.progress, self.best_weights = progress, best_weights
        # Shuffling and every random draw of the task come from this generator. Every rank seeds it
        # alike, so all ranks shuffle alike and each trains on its own rows of every batch.
        self.generator = torch.Generator(device=device).manual_seed(cfg.seed)
        self.precision = pick_precision(cfg.precision, device)
        self.shard = (distributed.rank(), distributed.world_size())

    @property
    def effective_batch_size(self) -> int:
        """Images per optimizer step, over all ranks."""
        return Length.batch(self.cfg)

    def length(self, n_train: int) -> Length:
        return Length.of(self.cfg, n_train)

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.precision)

    def validate(self, model: nn.Module, train: Split, split: Split) -> EvalResult:
        """The task's measure on `split` (`train`: the bank of measures that compare with it)."""
        with self.autocast():
            return self.task.validate(model, train, split, self.cfg.eval_batch_size)

    def fit(
        self,
        model: nn.Module,
        train: Split,
        val: Split,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        run: RunDir,
        checkpoint_info: dict[str, Any],
        resume: dict[str, Any] | None = None,
        on_epoch_end: Callable[[dict[str, Any], nn.Module], None] | None = None,
    ) -> FitResult:
        """Train for self.length() (or until early stopping, or until cfg.target_accuracy with
        cfg.stop_at_target), checkpointing after each epoch (and every cfg.checkpoint_every_steps
        steps, and when stopped by SIGINT/SIGTERM). With a target, validation also runs every
        cfg.check_every_steps steps inside the epoch; the row of the epoch in which the target was
        first reached records where (`target_step`, `target_elapsed_s`), and with stop_at_target
        that epoch ends at the check that reached it.

        `checkpoint_info` (config, model name, class count, objective) goes into every checkpoint;
        `resume` is a last.ckpt to continue from; `on_epoch_end(metrics_row, model)` is called
        after each epoch's checkpoint (its time is not counted in the run's).
        """
        cfg = self.cfg
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        ema = None
        if cfg.ema:
            ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        parts = Fitting(model, train, optimizer, scheduler, scaler, ema)
        length = self.length(len(train))
        if self.shard[1] > 1:
            torch.manual_seed(cfg.seed + self.shard[0])  # each rank its own dropout masks
        state = TrainState()
        snapshots = Snapshots(run, parts, checkpoint_info, self.task, self.generator, cfg.select, self.best_weights)
        if resume is not None:
            state = snapshots.restore(resume)
            run.write_metrics(state.history)
            at = state.in_progress
            where = f"step {at['step']} of epoch {state.epoch + 1}" if at else f"epoch {state.epoch}"
            log.info(f"resuming after {where} of {length.epochs}")
        parts.forward = model
        if self.shard[1] > 1:  # averages the gradients over the ranks
            device_ids = [self.device] if self.device.type == "cuda" else None
            parts.ddp = parts.forward = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        # The compiled module shares its parameters with `model`, whose state_dict is what is saved,
        # so checkpoints load into an uncompiled model.
        if cfg.compile:
            parts.forward = torch.compile(parts.forward)
        done_s = sum(row["epoch_time_s"] + row["val_time_s"] for row in state.history)
        started = time.perf_counter() - done_s - (state.in_progress["time_s"] if state.in_progress else 0.0)

        def save(current: EpochProgress | None = None, improved: bool = False) -> None:
            snapshots.save(state, improved, current)

        watch = TargetWatch(cfg.target_accuracy, cfg.check_every_steps, cfg.stop_at_target, state.history)

        def check(epoch: int, at: int) -> bool:
            """The check at step `at` of `epoch`; True ends the epoch there."""
            tic = time.perf_counter()
            result = self.validate(parts.measured, train, val)
            parts.model.train()
            step = length.steps_before(epoch) + at
            log.info(f"step {step}: val acc {result.acc:.4f} ({time.perf_counter() - tic:.2f} s)")
            return watch.inside(result, step, time.perf_counter() - started)

        with StopRequest() as stop, self.progress(run.writable) as progress:
            for epoch in range(state.epoch + 1, length.epochs + 1):
                steps = length.steps_in(epoch)
                if state.in_progress is not None:
                    current = EpochProgress.from_state_dict(state.in_progress, self.device)
                    state.in_progress = None
                else:
                    current = EpochProgress.start(
                        torch.randperm(len(train), device=self.device, generator=self.generator)
                    )
                bar = progress.add_task(
                    f"epoch {epoch}/{length.epochs}",
                    total=steps,
                    completed=current.step,
                    loss=float("nan"),
                    acc=float("nan"),
                )
                model.train()
                update = functools.partial(progress.update, bar)
                watch.start_epoch()
                checks = functools.partial(check, epoch) if watch.checks_inside else None
                train_loss, train_acc, seen = self.train_epoch(parts, current, steps, epoch, stop, save, update, checks)

                own = self.task.epoch_metrics(current.tally_totals())
                tic = time.perf_counter()
                result = watch.ending or self.validate(parts.measured, train, val)
                row = {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "train_acc": train_acc,
                    "val_loss": result.loss,
                    "val_acc": result.acc,
                    "lr": optimizer.param_groups[0]["lr"],
                    "epoch_time_s": current.time_s,
                    "val_time_s": time.perf_counter() - tic,
                    "images_per_s": seen / current.time_s,
                    "steps": current.step,
                    **own,
                }
                row["elapsed_s"] = time.perf_counter() - started
                watch.note(result, length.steps_before(epoch) + current.step, row["elapsed_s"])
                row.update(watch.found)
                improved = state.record(row, cfg.select)
                run.write_metrics(state.history)  # first: a last.ckpt on disk always has its metrics beside it
                save(improved=improved)
                log.info(
                    f"epoch {epoch}/{length.epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}  "
                    f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}  "
                    f"{row['images_per_s']:.0f} img/s  {current.time_s:.1f}s"
                    + "".join(f"  {name} {value:.4f}" for name, value in own.items() if isinstance(value, float))
                    + ("  *best*" if improved and cfg.select != "last" else "")  # last: every epoch is kept
                )
                for warning in self.task.epoch_warnings(row):
                    log.warning(f"epoch {epoch}: {warning}")
                if on_epoch_end is not None:
                    paused = time.perf_counter()
                    on_epoch_end(row, parts.measured)
                    started += time.perf_counter() - paused
                signum = stop.agreed(self.device, sync=True)
                if signum:  # it came in the epoch's last step or during validation: the epoch is saved
                    raise Interrupted(signum)
                if watch.stops(row, length.total_steps):
                    log.info(
                        f"stop: val accuracy {row['val_acc']:.4f} reached trainer.target_accuracy at step {row['target_step']}"
                    )
                    return FitResult(state.history, state.best_epoch, state.best_val_acc, stopped_at_target=True)
                if epoch == length.epochs:
                    break
                patience = cfg.early_stopping_patience
                if patience and state.epochs_without_progress() >= patience:
                    log.info(f"early stop: no better val accuracy for {patience} epochs")
                    return FitResult(state.history, state.best_epoch, state.best_val_acc, stopped_early=True)
        return FitResult(state.history, state.best_epoch, state.best_val_acc)

    def train_epoch(
        self,
        parts: Fitting,
        current: EpochProgress,
        steps: int,
        epoch: int,
        stop: StopRequest,
        save: Callable[[EpochProgress], None],
        update: Callable[..., None],
        check: Callable[[int], bool] | None = None,
    ) -> tuple[float, float, int]:
        """Take the rest of `current`'s optimizer steps. Every `log_every_steps` steps, at
        checkpoints and at the epoch's end: the running sums are read back (a host sync) and, under
        torchrun, the ranks agree whether a signal asked to stop. Every `check_every_steps` steps
        before the last, `check(step)` (not counted in the epoch's time) may end the epoch there.
        Returns the epoch's (mean loss, accuracy, images) over all ranks, as read at its last step
        (which always syncs: a mid-epoch checkpoint is never taken at the last step, so a resumed
        epoch has steps left)."""
        cfg = self.cfg
        rank, world = self.shard
        every = cfg.checkpoint_every_steps
        size, n = cfg.batch_size, cfg.accumulate_steps
        tic = time.perf_counter()
        for at in range(current.step + 1, steps + 1):
            first = (at - 1) * size * n
            self.optimizer_step(
                parts,
                [current.order[first + i * size : first + (i + 1) * size][rank::world] for i in range(n)],
                current,
            )
            current.step = at
            checkpoint_due = bool(every) and at % every == 0
            sync = at % cfg.log_every_steps == 0 or at == steps or checkpoint_due
            signum = stop.agreed(self.device, sync)
            if sync or signum:
                mean_loss, acc, seen = current.totals()  # the loop's only host syncs
                check_finite(mean_loss, epoch, at)
                update(completed=at, loss=mean_loss, acc=acc)
            if at < steps and (signum or checkpoint_due):  # the epoch's end saves anyway
                current.time_s += time.perf_counter() - tic
                tic = time.perf_counter()
                save(current)
                if signum:
                    raise Interrupted(signum)
            if check is not None and at < steps and at % cfg.check_every_steps == 0:
                current.time_s += time.perf_counter() - tic
                done = check(at)
                tic = time.perf_counter()
                if done:
                    mean_loss, acc, seen = current.totals()
                    break
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        current.time_s += time.perf_counter() - tic
        return mean_loss, acc, seen

    def optimizer_step(self, parts: Fitting, micro_batches: list[torch.Tensor], current: EpochProgress) -> None:
        """One optimizer and scheduler step over the gradients of `micro_batches` (index tensors
        into `train`), each weighing 1 / their number; under torchrun the gradients are averaged
        over the ranks once, on the last micro-batch."""
        p = parts
        p.optimizer.zero_grad(set_to_none=True)
        for i, idx in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            with contextlib.nullcontext() if p.ddp is None or last else p.ddp.no_sync():
                with self.autocast():
                    average = p.ema.module if p.ema is not None else None
                    batch = Batch(p.train.images[idx], p.train.labels[idx], self.generator, self.shard, average)
                    loss, correct = self.task.loss(p.forward, batch)
                p.scaler.scale(loss / len(micro_batches)).backward()
            current.add(loss, correct, len(idx), self.task.tallies())
        if self.cfg.grad_clip is not None:
            p.scaler.unscale_(p.optimizer)
            nn.utils.clip_grad_norm_([w for w in p.model.parameters() if w.requires_grad], self.cfg.grad_clip)
        p.scaler.step(p.optimizer)
        p.scaler.update()
        p.scheduler.step()
        if p.ema is not None:
            p.ema.update_parameters(p.model)
