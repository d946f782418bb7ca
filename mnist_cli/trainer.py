"""The one trainer every stage uses: the training loop with validation each epoch, mixed
precision, gradient clipping, early stopping, best/last checkpoints and resuming; and evaluation.

The data lives on the training device as uint8 tensors; each step indexes a batch out of a
device-side permutation and prepares it there (batches.py). Running loss and accuracy are summed
on the device and read back every `log_every_steps` steps, not every step.

Under torchrun each rank trains on its rows of every batch (distributed.py); rank 0 writes.
A checkpoint can be taken mid-epoch (every `checkpoint_every_steps` steps, and on SIGINT/SIGTERM):
it holds the epoch's order and running sums, so a resumed run takes the very steps it would have.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from mnist_cli import distributed
from mnist_cli.batches import BatchPrep
from mnist_cli.checkpoint import save_checkpoint
from mnist_cli.console import training_progress
from mnist_cli.data import Split
from mnist_cli.distill import Distillation
from mnist_cli.errors import Interrupted, UserError
from mnist_cli.interrupts import StopRequest
from mnist_cli.lora import merged_state_dict
from mnist_cli.robustness import attack
from mnist_cli.run_dir import RunDir
from mnist_cli.self_supervised import Objective

log = logging.getLogger(__name__)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"trainer.device={name}: CUDA is not available here; use trainer.device=auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"trainer.device={name}: MPS is not available here; use trainer.device=auto or cpu")
    return device


def pick_precision(name: str, device: torch.device) -> str:
    """`auto`: bf16 where the hardware computes it natively, fp16 on GPUs without bf16, else fp32
    (on a CPU without native bf16, autocast to bf16 is several times slower than fp32)."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu":
        native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)() or getattr(
            torch.cpu, "_is_amx_tile_supported", lambda: False
        )()
        return "bf16" if native else "fp32"
    return "fp32"


@dataclass
class EvalResult:
    loss: float
    acc: float
    predictions: torch.Tensor  # (N,) predicted class per image, on the CPU
    probabilities: torch.Tensor | None = None  # (N, classes) softmax, on the CPU


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    best_epoch: int
    best_val_acc: float
    stopped_early: bool = False


@dataclass
class TrainState:
    """What a checkpoint remembers of training so far."""

    epoch: int = 0  # epochs completed
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_acc: float = -1.0
    in_progress: dict[str, Any] | None = None  # EpochProgress.state_dict() of a mid-epoch checkpoint


@dataclass
class EpochProgress:
    """The epoch being trained: its data order, the steps done and the running sums (this rank's).
    Mid-epoch checkpoints save it, so a resumed run goes on at the next step of the same order."""

    order: torch.Tensor
    loss_sum: torch.Tensor
    correct: torch.Tensor
    step: int = 0
    seen: int = 0
    time_s: float = 0.0

    @classmethod
    def start(cls, order: torch.Tensor) -> EpochProgress:
        return cls(order, torch.zeros((), device=order.device), torch.zeros((), device=order.device))

    def state_dict(self) -> dict[str, Any]:
        return {"order": self.order.cpu(), "loss_sum": self.loss_sum.cpu(), "correct": self.correct.cpu(),
                "step": self.step, "seen": self.seen, "time_s": self.time_s}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: torch.device) -> EpochProgress:
        return cls(state["order"].to(device), state["loss_sum"].to(device), state["correct"].to(device),
                   state["step"], state["seen"], state["time_s"])

    def totals(self) -> tuple[float, float, int]:
        """Mean loss, accuracy and images seen so far, summed over all ranks (a host sync)."""
        sums = distributed.all_reduce(torch.stack([self.loss_sum, self.correct.float(), torch.tensor(float(self.seen), device=self.loss_sum.device)]))
        loss_sum, correct, seen = sums.tolist()
        return loss_sum / seen, correct / seen, int(seen)


class Trainer:
    def __init__(self, cfg: DictConfig, device: torch.device, prep: BatchPrep, objective: Objective | None = None,
                 distillation: Distillation | None = None):
        """`objective`: None trains a classifier on the labels (cross-entropy); a self-supervised
        objective supplies the loss of a batch and the validation metric instead. `distillation`:
        the classifier also learns from a teacher's soft targets."""
        self.cfg = cfg
        self.device = device
        self.prep = prep
        self.objective = objective
        self.distillation = distillation
        # Shuffling and augmentation draw from this generator. Every rank seeds it alike, so all
        # ranks shuffle alike and each trains on its own rows of every batch.
        self.generator = torch.Generator(device=device).manual_seed(cfg.seed)
        self.precision = pick_precision(cfg.precision, device)
        self.dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]
        self.shard = (distributed.rank(), distributed.world_size())

    def steps_per_epoch(self, n_train: int) -> int:
        """Full batches only (BatchNorm needs more than one image); at least one step."""
        return max(1, n_train // self.cfg.batch_size)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

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
        """Train for cfg.epochs epochs (or until early stopping), checkpointing after each one
        (and every cfg.checkpoint_every_steps steps, and when stopped by SIGINT/SIGTERM).

        `checkpoint_info` (config, model name, class count, objective) goes into every checkpoint;
        `resume` is a last.ckpt to continue from; `on_epoch_end(metrics_row, model)` is called
        after each epoch's checkpoint (its time is not counted in the run's).
        """
        cfg = self.cfg
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        if self.shard[1] > 1:
            torch.manual_seed(cfg.seed + self.shard[0])  # each rank its own dropout masks
        state = TrainState()
        if resume is not None:
            state = self.restore(resume, model, optimizer, scheduler, scaler)
            run.write_metrics(state.history)
            where = f"step {state.in_progress['step']} of epoch {state.epoch + 1}" if state.in_progress else f"epoch {state.epoch}"
            log.info(f"resuming after {where} of {cfg.epochs}")
        forward = model
        if self.shard[1] > 1:  # averages the gradients over the ranks
            forward = nn.parallel.DistributedDataParallel(model, device_ids=[self.device] if self.device.type == "cuda" else None)
        # The compiled module shares its parameters with `model`, whose state_dict is what is saved,
        # so checkpoints load into an uncompiled model.
        if cfg.compile:
            forward = torch.compile(forward)
        steps = self.steps_per_epoch(len(train))
        done_s = sum(row["epoch_time_s"] + row["val_time_s"] for row in state.history)
        started = time.perf_counter() - done_s - (state.in_progress["time_s"] if state.in_progress else 0.0)
        stopped_early = False

        def checkpoint(current: EpochProgress) -> None:  # mid-epoch: last.ckpt only
            self.save(run, model, optimizer, scheduler, scaler, state, checkpoint_info, improved=False, current=current)

        with StopRequest() as stop, training_progress(enabled=run.writable) as progress:
            for epoch in range(state.epoch + 1, cfg.epochs + 1):
                if state.in_progress is not None:
                    current = EpochProgress.from_state_dict(state.in_progress, self.device)
                    state.in_progress = None
                else:
                    current = EpochProgress.start(torch.randperm(len(train), device=self.device, generator=self.generator))
                task = progress.add_task(f"epoch {epoch}/{cfg.epochs}", total=steps, completed=current.step, loss=float("nan"), acc=float("nan"))
                train_loss, train_acc, seen = self.train_epoch(
                    model, forward, train, optimizer, scheduler, scaler, current, steps, epoch, stop,
                    checkpoint, functools.partial(progress.update, task),
                )

                tic = time.perf_counter()
                result = self.validate(model, train, val)
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
                }
                row["elapsed_s"] = time.perf_counter() - started
                state.history.append(row)
                state.epoch = epoch
                # Ties go to the later epoch: a small validation split often ties, and later epochs have
                # trained longer at a lower learning rate.
                improved = result.acc >= state.best_val_acc
                if improved:
                    state.best_epoch, state.best_val_acc = epoch, result.acc
                self.save(run, model, optimizer, scheduler, scaler, state, checkpoint_info, improved)
                run.write_metrics(state.history)
                log.info(
                    f"epoch {epoch}/{cfg.epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}  "
                    f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}  "
                    f"{row['images_per_s']:.0f} img/s  {current.time_s:.1f}s" + ("  *best*" if improved else "")
                )
                if on_epoch_end is not None:
                    paused = time.perf_counter()
                    on_epoch_end(row, model)
                    started += time.perf_counter() - paused
                signum = self.stop_signal(stop)
                if signum:  # it came in the epoch's last step or during validation: the epoch is saved
                    raise Interrupted(signum)
                patience = cfg.early_stopping_patience
                top = max(row["val_acc"] for row in state.history)
                first_at_top = next(row["epoch"] for row in state.history if row["val_acc"] == top)
                if patience and epoch - first_at_top >= patience and epoch < cfg.epochs:  # a tie is no progress
                    log.info(f"early stop: no better val accuracy for {patience} epochs")
                    stopped_early = True
                    break
        return FitResult(state.history, state.best_epoch, state.best_val_acc, stopped_early)

    def train_epoch(self, model, forward, train: Split, optimizer, scheduler, scaler, current: EpochProgress, steps: int,
                    epoch: int, stop: StopRequest, checkpoint: Callable[[EpochProgress], None],
                    report: Callable[..., None]) -> tuple[float, float, int]:
        """Train the rest of `current`'s epoch: (mean loss, accuracy, images seen over all ranks).

        Host syncs happen only every `log_every_steps` steps and at checkpoints."""
        cfg = self.cfg
        rank, world = self.shard
        every = cfg.checkpoint_every_steps
        model.train()
        trainable = [p for p in model.parameters() if p.requires_grad]
        tic = time.perf_counter()
        for step in range(current.step + 1, steps + 1):
            idx = current.order[(step - 1) * cfg.batch_size : step * cfg.batch_size][rank::world]
            with self.autocast():
                if self.objective is None:
                    y = train.labels[idx]
                    pixels = self.prep.pixels(train.images[idx], train=True, generator=self.generator, shard=self.shard)
                    if cfg.adversarial is not None:
                        pixels = self.adversarial(model, pixels, y)
                    x = self.prep.normalize(pixels)
                    logits = forward(x)
                    if self.distillation is not None:
                        loss = self.distillation.loss(x, logits, y, cfg.label_smoothing)
                    else:
                        loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
                    correct = (logits.detach().argmax(1) == y).sum()
                else:  # no labels
                    loss, correct = self.objective.loss(forward, train.images[idx], self.generator)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            current.loss_sum += loss.detach() * len(idx)
            current.correct += correct
            current.seen += len(idx)
            current.step = step
            signum = self.stop_signal(stop)
            if step % cfg.log_every_steps == 0 or step == steps or signum or (every and step % every == 0):
                mean_loss, acc, seen = current.totals()  # the loop's only host syncs
                self.check_finite(mean_loss, epoch, step)
                report(completed=step, loss=mean_loss, acc=acc)
            if step < steps and (signum or (every and step % every == 0)):  # the epoch's end saves anyway
                current.time_s += time.perf_counter() - tic
                tic = time.perf_counter()
                checkpoint(current)
                if signum:
                    raise Interrupted(signum)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        current.time_s += time.perf_counter() - tic
        return mean_loss, acc, seen

    def adversarial(self, model: nn.Module, pixels: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The batch's pixels attacked with cfg.adversarial (fgsm | pgd), for adversarial training;
        the attack runs with BatchNorm in eval mode so its passes leave the running statistics alone."""
        cfg = self.cfg
        model.eval()
        attacked = attack(cfg.adversarial, lambda p: model(self.prep.normalize(p)).float(), pixels, y,
                          cfg.adversarial_eps, cfg.adversarial_steps, None, True, self.generator)
        model.train()
        return attacked

    def stop_signal(self, stop: StopRequest) -> int:
        """The signal that asked to stop (0: none); with several ranks, any rank's."""
        if self.shard[1] == 1:
            return stop.signum or 0
        return int(distributed.all_reduce(torch.tensor(stop.signum or 0, device=self.device), op="max"))

    @staticmethod
    def check_finite(loss: float, epoch: int, step: int) -> None:
        if loss != loss or loss in (float("inf"), float("-inf")):
            raise UserError(
                f"the training loss became {loss} in epoch {epoch} by step {step}; lower optimizer.lr, "
                "set trainer.grad_clip=1.0, or use trainer.precision=fp32 (the last good checkpoint is kept)"
            )

    def validate(self, model: nn.Module, train: Split, split: Split) -> EvalResult:
        """Loss and accuracy on `split`: the classifier's, or for a self-supervised objective its
        loss on views of `split` and the k-NN accuracy of the features (with `train` as the bank)."""
        if self.objective is None:
            return self.evaluate(model, split)
        with self.autocast():
            views = torch.Generator(device=self.device).manual_seed(self.cfg.seed)  # the same views every epoch
            model.eval()
            with torch.no_grad():
                losses = [self.objective.loss(model, split.images[i : i + self.cfg.eval_batch_size], views)[0]
                          for i in range(0, len(split), self.cfg.eval_batch_size)]
            acc = self.objective.knn_accuracy(model, train, split, self.cfg.eval_batch_size)
        return EvalResult(float(torch.stack(losses).mean()), acc, torch.empty(0, dtype=torch.long))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: Split) -> EvalResult:
        """Mean cross-entropy (without label smoothing), accuracy and predictions, in large batches."""
        model.eval()
        loss_sum = torch.zeros((), device=self.device)
        probabilities = []
        for start in range(0, len(split), self.cfg.eval_batch_size):
            x = self.prep(split.images[start : start + self.cfg.eval_batch_size], train=False)
            y = split.labels[start : start + self.cfg.eval_batch_size]
            with self.autocast():
                logits = model(x).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            probabilities.append(logits.softmax(1))
        probabilities_cpu = torch.cat(probabilities).cpu()
        predictions = probabilities_cpu.argmax(1)
        correct = int((predictions == split.labels.cpu()).sum())
        return EvalResult(loss_sum.item() / len(split), correct / len(split), predictions, probabilities_cpu)

    def save(self, run: RunDir, model, optimizer, scheduler, scaler, state: TrainState, info: dict, improved: bool,
             current: EpochProgress | None = None) -> None:
        """best.ckpt when the epoch improved; always last.ckpt, with everything needed to resume
        (including the epoch in progress, for a mid-epoch checkpoint). Rank 0 writes."""
        rng = {"torch": distributed.gather(torch.get_rng_state()), "generator": self.generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = distributed.gather(torch.cuda.get_rng_state(self.device))
        if not run.writable:
            return
        common = {
            **info,
            "model": model.state_dict(),
            "epoch": state.epoch,
            "history": state.history,
            "best_epoch": state.best_epoch,
            "best_val_acc": state.best_val_acc,
        }
        if improved:  # as a plain model: LoRA adapters merged into the weights
            save_checkpoint(run.best_ckpt, {**common, "model": merged_state_dict(model)})
        save_checkpoint(
            run.last_ckpt,
            {
                **common,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": rng,
                "in_progress": current.state_dict() if current is not None else None,
            },
        )

    def restore(self, ckpt: dict, model, optimizer, scheduler, scaler) -> TrainState:
        rank, world = self.shard
        saved_world = len(ckpt["rng"]["torch"])
        if saved_world != world:
            raise UserError(f"this run was trained by {saved_world} process(es); resume it with as many (torchrun --nproc_per_node={saved_world})")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["rng"]["torch"][rank])
        self.generator.set_state(ckpt["rng"]["generator"])
        if "cuda" in ckpt["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"][rank], self.device)
        return TrainState(ckpt["epoch"], list(ckpt["history"]), ckpt["best_epoch"], ckpt["best_val_acc"], ckpt["in_progress"])
