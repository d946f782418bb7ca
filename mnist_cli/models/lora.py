"""Low-rank adapters (LoRA) for finetuning the ViT: each linear layer of the attention and MLP
blocks keeps its weight W frozen and learns a low-rank update, W + (alpha / rank) * B @ A, with
A (rank x in) and B (out x rank; zero at the start, so training starts from the pretrained model).

The saved best checkpoint holds the merged weights under the plain layer names, so `mnist eval`
and a further `mnist finetune` load it as an ordinary model; last.ckpt keeps the adapters to resume.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update. Its weight and bias keep their names."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.weight = nn.Parameter(base.weight.detach().clone(), requires_grad=False)
        self.bias = None if base.bias is None else nn.Parameter(base.bias.detach().clone(), requires_grad=False)
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scale = alpha / rank

    def _load_from_state_dict(self, state_dict, prefix, *args) -> None:
        """A plain layer's state (no lora_* keys: e.g. a merged best.ckpt) loads as that weight
        with a zero update, so it computes what the merged layer computes."""
        if prefix + "weight" in state_dict and prefix + "lora_a" not in state_dict:
            state_dict[prefix + "lora_a"] = self.lora_a.detach().clone()
            state_dict[prefix + "lora_b"] = torch.zeros_like(self.lora_b)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def merged_weight(self) -> torch.Tensor:
        return self.weight + self.scale * self.lora_b @ self.lora_a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias) + F.linear(F.linear(x, self.lora_a), self.lora_b) * self.scale


def add_adapters(backbone: nn.Module, rank: int, alpha: float) -> int:
    """Put an adapter on every linear layer inside `backbone.blocks`; return how many."""
    count = 0
    for block in backbone.blocks:
        for parent in block.modules():
            for name, child in parent.named_children():
                if isinstance(child, nn.Linear):
                    setattr(parent, name, LoRALinear(child, rank, alpha))
                    count += 1
    return count


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """`model.state_dict()` with every adapter folded into its layer's weight (no lora_* keys)."""
    state = model.state_dict()
    for prefix, module in model.named_modules():
        if isinstance(module, LoRALinear):
            state[f"{prefix}.weight"] = module.merged_weight().detach()
            del state[f"{prefix}.lora_a"], state[f"{prefix}.lora_b"]
    return state
