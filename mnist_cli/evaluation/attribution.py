"""Attribution maps: which pixels decided a classifier's answer, by Captum (PyTorch's
interpretability library), for `mnist explain` and serve's POST /explain.

explain.method:
- integrated_gradients: the gradient averaged along the straight path from a black image to the
  input, times the input's difference from black; the maps add up to the class score's change
  along that path (completeness; Captum reports the shortfall as the convergence delta);
- saliency: the absolute gradient of the class score at the input;
- occlusion: how much the class score drops when a square patch is blanked, slid over the image;
- gradcam: the last conv layer's activations weighted by their gradient, scaled up to 28x28 (conv
  models: cnn, resnet18; a ViT has no conv layers to weigh, so it takes the other three).

Maps are taken on the raw class score (the logit before any temperature), in float32.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from mnist_cli.errors import UserError

METHODS = ("integrated_gradients", "saliency", "occlusion", "gradcam")


def captum() -> Any:
    try:
        import captum.attr
    except ImportError:
        raise UserError("explanations need Captum: pip install 'mnist-cli[explain]'") from None
    return captum.attr


def last_conv(model: nn.Module) -> nn.Conv2d:
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise UserError(
            "explain.method=gradcam weighs a conv layer's activations and this model has none (a vit): "
            "use explain.method=integrated_gradients, saliency or occlusion"
        )
    return convs[-1]


def attribute(
    model: nn.Module, x: torch.Tensor, targets: torch.Tensor, cfg: DictConfig, black: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(maps (N, 28, 28) for the `targets` classes of the normalized inputs `x` (N, 1, 28, 28),
    integrated gradients' convergence deltas (N,) or None). `black`: a black pixel, normalized."""
    attr = captum()
    model.eval()
    x = x.float().detach().requires_grad_(True)
    deltas = None
    with torch.autocast(x.device.type, enabled=False):
        if cfg.method == "integrated_gradients":
            maps, deltas = attr.IntegratedGradients(model).attribute(
                x,
                baselines=torch.full_like(x, black),
                target=targets,
                n_steps=cfg.ig_steps,
                internal_batch_size=max(
                    cfg.batch_size, len(x)
                ),  # rows of (image, step) per pass; at least one per image
                return_convergence_delta=True,
            )
        elif cfg.method == "saliency":
            maps = attr.Saliency(model).attribute(x, target=targets, abs=True)
        elif cfg.method == "occlusion":
            window, stride = cfg.occlusion_window, cfg.occlusion_stride
            maps = attr.Occlusion(model).attribute(
                x,
                target=targets,
                sliding_window_shapes=(1, window, window),
                strides=(1, stride, stride),
                baselines=black,
            )
        else:
            coarse = attr.LayerGradCam(model, last_conv(model)).attribute(x, target=targets, relu_attributions=True)
            maps = attr.LayerAttribution.interpolate(coarse, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    return maps.detach()[:, 0], None if deltas is None else deltas.detach()
