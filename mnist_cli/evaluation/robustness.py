"""How a classifier holds up beyond clean test images: L-inf adversarial attacks (FGSM, PGD), a
fixed set of seeded image corruptions, and test-time augmentation. Images are pixels in [0, 1];
`forward` maps such a batch to logits (normalization included)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from mnist_cli.data.batches import affine
from mnist_cli.evaluation.inference import chunks

Forward = Callable[[torch.Tensor], torch.Tensor]


def fgsm(forward: Forward, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """One signed-gradient step of size eps up the loss (Goodfellow et al., 2015)."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(forward(x), y), x)
    return (x + eps * grad.sign()).clamp(0, 1).detach()


def pgd(
    forward: Forward,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int,
    step_size: float,
    random_start: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient descent (Madry et al., 2018): `steps` signed-gradient steps, each projected
    back into the L-inf ball of radius eps around x and into [0, 1]; optionally from a random point
    of the ball."""
    adv = x.clone()
    if random_start:
        adv = (adv + (torch.rand(x.shape, device=x.device, generator=generator) * 2 - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(forward(adv), y), adv)
        adv = torch.min(torch.max(adv.detach() + step_size * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return adv.detach()


def attack(
    name: str,
    forward: Forward,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int,
    step_size: float | None,
    random_start: bool,
    generator: torch.Generator,
) -> torch.Tensor:
    """The adversarial images of attack `name` (fgsm | pgd) at strength eps; PGD's step size
    defaults to 2.5 * eps / steps."""
    if name == "fgsm":
        return fgsm(forward, x, y, eps)
    return pgd(
        forward, x, y, eps, steps, step_size if step_size is not None else 2.5 * eps / steps, random_start, generator
    )


def corrupt(name: str, x: torch.Tensor, cfg: DictConfig, generator: torch.Generator) -> torch.Tensor:
    """Image corruption `name` (one of CORRUPTIONS) at the strength in `cfg` (eval.corruption)."""
    n = len(x)
    if name == "noise":
        return (x + torch.randn(x.shape, device=x.device, generator=generator) * cfg.noise_std).clamp(0, 1)
    if name == "blur":
        from torchvision.transforms.v2.functional import gaussian_blur  # torchvision takes a second to import

        size = 2 * math.ceil(3 * cfg.blur_sigma) + 1
        return gaussian_blur(x, [size, size], [cfg.blur_sigma, cfg.blur_sigma])
    if name == "shift":
        direction = torch.rand(n, device=x.device, generator=generator) * 2 * math.pi
        shift = torch.stack([direction.cos(), direction.sin()], 1) * cfg.shift_pixels
        return affine(x, shift=shift)
    if name == "rotation":  # each image turned one way or the other
        sign = torch.randint(0, 2, (n,), device=x.device, generator=generator) * 2 - 1
        return affine(x, angle=sign * math.radians(cfg.rotate_degrees))
    if name == "contrast":
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (mean + (x - mean) * cfg.contrast).clamp(0, 1)
    raise ValueError(f"unknown corruption {name}")


CORRUPTIONS = ("noise", "blur", "shift", "rotation", "contrast")


def tta_probabilities(forward: Forward, x: torch.Tensor, shift: int) -> torch.Tensor:
    """Class probabilities averaged over the image and its copies moved `shift` pixels right, left,
    down and up (digits are not mirror-symmetric, so no flips)."""
    total = forward(x).float().softmax(1)
    moves = ((shift, 0), (-shift, 0), (0, shift), (0, -shift))
    for move in moves:
        moved = affine(x, shift=torch.tensor(move, dtype=x.dtype, device=x.device).expand(len(x), 2))
        total = total + forward(moved).float().softmax(1)
    return total / (1 + len(moves))


def attacked_accuracy(
    cfg: DictConfig, forward: Forward, pixels: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> dict[str, dict[str, float]]:
    """{attack: {eps: accuracy}} for each attack of eval.attack and each eps of eval.eps."""
    names = [cfg.attack] if isinstance(cfg.attack, str) else list(cfg.attack or [])
    results: dict[str, dict[str, float]] = {}
    for name in names:
        results[name] = {}
        for eps in cfg.eps:
            generator = torch.Generator(device=pixels.device).manual_seed(cfg.pgd_seed)  # PGD's random starts
            correct = 0
            for x, y in chunks(pixels, labels, size=batch_size):
                adv = attack(
                    name, forward, x, y, float(eps), cfg.pgd_steps, cfg.pgd_step_size, cfg.pgd_random_start, generator
                )
                with torch.no_grad():
                    correct += int((forward(adv).argmax(1) == y).sum())
            results[name][str(eps)] = correct / len(labels)
    return results


def corrupted_accuracy(
    cfg: DictConfig, forward: Forward, pixels: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> dict[str, float]:
    """{corruption: accuracy} for each of CORRUPTIONS, seeded by cfg.seed."""
    results = {}
    for i, name in enumerate(CORRUPTIONS):
        generator = torch.Generator(device=pixels.device).manual_seed(cfg.seed + i)
        correct = 0
        with torch.no_grad():
            for x, y in chunks(pixels, labels, size=batch_size):
                correct += int((forward(corrupt(name, x, cfg, generator)).argmax(1) == y).sum())
        results[name] = correct / len(labels)
    return results
