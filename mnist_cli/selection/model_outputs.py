"""What the selection strategies read from a loaded model (deploy/inference.py) over many images:
its (calibrated) class probabilities, its backbone's features, and samples of its probabilities
(an ensemble's members, or MC-dropout passes through the head of one model)."""

from __future__ import annotations

import torch
from torch import nn

from mnist_cli.deploy.inference import Inference
from mnist_cli.evaluation.inference import outputs
from mnist_cli.models.calibrated import Calibrated, uncalibrated
from mnist_cli.models.ensemble import Ensemble


def probabilities(loaded: Inference, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N, C) class probabilities of uint8 `images`, on the CPU."""
    with loaded.autocast():
        logits = outputs(lambda x: loaded.model(loaded.prep(x.to(loaded.device), train=False)), images, batch_size)
    return logits.softmax(1).cpu()


def first_member(model: nn.Module) -> nn.Module:
    """A single model's classifier, or an ensemble's first member's, without its temperature."""
    model = uncalibrated(model)
    return model.members[0] if isinstance(model, Ensemble) else model


def features(loaded: Inference, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N, D) backbone features (an ensemble: its first member's), on the CPU."""
    backbone = first_member(loaded.model).backbone
    with loaded.autocast():
        return outputs(lambda x: backbone(loaded.prep(x.to(loaded.device), train=False)), images, batch_size).cpu()


def samples(loaded: Inference, images: torch.Tensor, batch_size: int, passes: int, seed: int) -> torch.Tensor:
    """(T, N, C) probabilities from T samples of the model: an ensemble's members, or `passes`
    passes through one model's head with its dropout on (MC dropout; the backbone runs once)."""
    model = loaded.model
    if isinstance(model, Ensemble):
        with loaded.autocast():
            return torch.stack(
                [
                    outputs(lambda x, m=m: m(loaded.prep(x.to(loaded.device), train=False)), images, batch_size)
                    .softmax(1)
                    .cpu()
                    for m in model.members
                ]
            )
    temperature = model.temperature if isinstance(model, Calibrated) else 1.0
    head = first_member(model).head
    pooled = features(loaded, images, batch_size).to(loaded.device)
    torch.manual_seed(seed)
    head.train()  # dropout on
    try:
        with torch.no_grad():
            return torch.stack([(head(pooled) / temperature).float().softmax(1).cpu() for _ in range(passes)])
    finally:
        head.eval()
