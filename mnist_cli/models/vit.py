"""A Vision Transformer for 28x28 images (conf/model/vit.yaml names vit()): patch embedding,
learned position embeddings, pre-norm blocks with scaled_dot_product_attention, and a class token
or mean pooling.

The backbone returns pooled features; `forward_tokens` returns every token (class token first when
there is one), for objectives that need the patch tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mnist_cli.models.classifier import Classifier


def vit(
    num_classes: int,
    patch: int,
    dim: int,
    depth: int,
    heads: int,
    mlp_ratio: float,
    dropout: float,
    pool: str,
    head_dropout: float,
    name: str,
) -> Classifier:
    return Classifier(ViTBackbone(patch, dim, depth, heads, mlp_ratio, dropout, pool), num_classes, head_dropout, name)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"model.dim={dim} must be divisible by model.heads={heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.mlp(self.norm2(x)))


class ViTBackbone(nn.Module):
    def __init__(
        self,
        patch: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_ratio: float,
        dropout: float,
        pool: str,
        image_size: int = 28,
        in_channels: int = 1,
    ):
        super().__init__()
        if image_size % patch:
            raise ValueError(f"model.patch={patch} must divide the image size {image_size} (use 4 or 7)")
        if pool not in ("cls", "mean"):
            raise ValueError(f"model.pool={pool}: use cls or mean")
        self.pool = pool
        self.feature_dim = dim
        self.num_patches = (image_size // patch) ** 2
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + (pool == "cls"), dim))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_ratio, dropout) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(self._init)

    def block_groups(self) -> list[list[nn.Module]]:
        """The layers grouped into blocks from input to output: the patch embedding (its class token
        and position embeddings count with it), each transformer block, and the last LayerNorm with
        the last block."""
        transformer = list(self.blocks)
        return [[self.patch_embed], *([block] for block in transformer[:-1]), [transformer[-1], self.norm]]

    def no_weight_decay(self) -> set[str]:
        """Parameters the optimizer does not decay (see training/optim.py)."""
        return {"pos_embed", "cls_token"}

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) -> (B, tokens, dim): the class token (if any) then one per patch."""
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)
        return self.norm(self.blocks(self.drop(tokens + self.pos_embed)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.forward_tokens(x)
        return tokens[:, 0] if self.pool == "cls" else tokens.mean(dim=1)
