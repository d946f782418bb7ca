"""A checkpoint's model ready to answer (eval, export, predict, serve, explain): in eval mode on its
device, run under the precision the config asks for, with the batch preparation of its data set."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from mnist_cli.data.batches import BatchPrep
from mnist_cli.training.runtime import autocast, pick_precision, setup
from mnist_cli.training.source import Source


@dataclass
class Inference:
    """A classifier ready to answer: in eval mode on `device`, run under `precision`."""

    model: nn.Module  # one checkpoint's (calibrated) model, or an Ensemble
    device: torch.device
    precision: str  # fp32, bf16 or fp16 (trainer.precision, `auto` decided for the device)
    prep: BatchPrep  # normalization of uint8 digits for this model

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.precision)


def ready(cfg: DictConfig, source: Source, threads: int | None = None, for_export: bool = False) -> Inference:
    """Set up the process (runtime.setup: seeds, threads, device) and put `source`'s model (calibrated
    as cfg.calibrate says) on the device in eval mode; `cfg` is the settled config, which describes
    the source. `threads`: torch's CPU threads, over trainer.num_threads; `for_export`: on the CPU
    in float32 and the default memory layout, whatever the config says."""
    device = setup(cfg)  # seeds, threads, deterministic kernels; the device trainer.device names
    if for_export:
        device = torch.device("cpu")
    if threads:
        torch.set_num_threads(threads)
    precision = "fp32" if for_export else pick_precision(cfg.trainer.precision, device)
    # channels_last, as in training: the inputs come so (BatchPrep), and the CPU's pooling kernels
    # are several times faster on it than on a model left in the default layout. An export keeps the
    # default layout: its file takes plain (N, 1, 28, 28) tensors, and pruning flattens the weights.
    channels_last = not for_export
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = source.model(calibrate=cfg.calibrate).to(device, memory_format=layout).eval()
    return Inference(model, device, precision, BatchPrep(cfg.dataset, channels_last=channels_last))
