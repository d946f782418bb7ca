"""Where and how a stage computes: seeding, threads and deterministic kernels, the device, and the
precision (autocast). Every stage calls setup() first."""

from __future__ import annotations

import contextlib
import os

import torch
from omegaconf import DictConfig

from mnist_cli.errors import UserError
from mnist_cli.training import distributed

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def setup(cfg: DictConfig) -> torch.device:
    """Seed every random number generator, set torch's CPU threads, choose deterministic kernels if
    asked, join the torchrun process group if there is one, and pick the device; call before
    building a model."""
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    if cfg.trainer.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for determinism
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    torch.manual_seed(cfg.trainer.seed)
    if distributed.world_size() > 1:
        return distributed.start(cfg.trainer.device)
    return pick_device(cfg.trainer.device)


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
        native = (
            getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
            or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        )
        return "bf16" if native else "fp32"
    return "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for `precision` (a pick_precision() answer); fp32: nothing."""
    if DTYPES[precision] is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])
