"""objective=mae: self-supervised pretraining of the ViT as a masked autoencoder (MAE): hide a random
`mask_ratio` of each image's patches, encode only the visible ones with the ViT backbone, and let a
light transformer decoder predict the pixels of the hidden patches; the loss is the mean squared
error on the hidden patches only. No labels are used to train; the k-NN monitor is shared
(self_supervised.py). Finetuning keeps the backbone and drops the decoder.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from mnist_cli.data.batches import BatchPrep
from mnist_cli.errors import UserError
from mnist_cli.models.classifier import Classifier
from mnist_cli.models.vit import Block, ViTBackbone
from mnist_cli.objectives.base import Batch, Forward
from mnist_cli.objectives.self_supervised import Learner, SelfSupervised


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, 1, H, W) -> (B, patches, patch * patch), patches in the ViT's row-major order."""
    b = len(x)
    return x.unfold(2, patch, patch).unfold(3, patch, patch).reshape(b, -1, patch * patch)


class MaskedAutoencoder(Learner):
    """A ViT classifier with the decoder that reconstructs hidden patches."""

    def __init__(
        self, classifier: Classifier, mask_ratio: float, decoder_dim: int, decoder_depth: int, decoder_heads: int
    ):
        super().__init__(classifier)
        vit = classifier.backbone
        if not isinstance(vit, ViTBackbone):
            raise UserError(
                f"objective=mae masks a ViT's patches; use model=vit or model=vit_mini (not {classifier.name})"
            )
        self.mask_ratio = mask_ratio
        self.patch = vit.patch_embed.kernel_size[0]
        dim = vit.pos_embed.shape[-1]
        self.decoder_embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos = nn.Parameter(torch.zeros(1, vit.num_patches, decoder_dim))
        self.decoder = nn.Sequential(*(Block(decoder_dim, decoder_heads, 4.0, 0.0) for _ in range(decoder_depth)))
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.predict = nn.Linear(decoder_dim, self.patch * self.patch)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.decoder_pos, std=0.02)

    def no_weight_decay(self) -> set[str]:
        """Parameters the optimizer does not decay (see training/optim.py)."""
        return {"mask_token", "decoder_pos"}

    def forward(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The reconstruction loss of a normalized batch, with a fresh random mask per image."""
        vit = self.classifier.backbone
        b = len(x)
        has_cls = vit.cls_token is not None
        tokens = vit.patch_embed(x).flatten(2).transpose(1, 2) + vit.pos_embed[:, int(has_cls) :]
        n, dim = tokens.shape[1:]
        keep = max(1, round(n * (1 - self.mask_ratio)))
        visible_idx = torch.rand(b, n, device=x.device, generator=generator).argsort(1)[:, :keep]
        visible = tokens.gather(1, visible_idx[..., None].expand(-1, -1, dim))
        if has_cls:
            visible = torch.cat([(vit.cls_token + vit.pos_embed[:, :1]).expand(b, -1, -1), visible], 1)
        encoded = vit.norm(vit.blocks(vit.drop(visible)))[:, int(has_cls) :]

        decoded = self.decoder_embed(encoded)
        full = self.mask_token.expand(b, n, -1).to(decoded.dtype)
        full = full.scatter(1, visible_idx[..., None].expand(-1, -1, decoded.shape[-1]), decoded)
        predicted = self.predict(self.decoder_norm(self.decoder(full + self.decoder_pos))).float()
        hidden = torch.ones(b, n, device=x.device).scatter(1, visible_idx, 0.0)
        error = ((predicted - patchify(x.float(), self.patch)) ** 2).mean(-1)
        return (error * hidden).sum() / hidden.sum()


class MaskedReconstruction(SelfSupervised):
    """The reconstruction loss of batches prepared as for supervised training (the data set's
    augmentation, then normalization); conf/objective/mae.yaml says what each argument means."""

    def __init__(
        self,
        name: str,
        mask_ratio: float,
        decoder_dim: int,
        decoder_depth: int,
        decoder_heads: int,
        knn_k: int,
        knn_temperature: float,
        classifier: Classifier,
        prep: BatchPrep,
        trainer: DictConfig,
    ):
        learner = MaskedAutoencoder(classifier, mask_ratio, decoder_dim, decoder_depth, decoder_heads)
        super().__init__(name, learner, prep, knn_k, knn_temperature, trainer.seed)

    def loss(self, forward: Forward, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prep(batch.images, train=True, generator=batch.generator)
        return forward(x, batch.generator), torch.zeros((), device=x.device)
