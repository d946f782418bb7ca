"""A map of a test set: each image's backbone features placed in 2-D (eval.embedding), so a person
sees whether the classes fall apart, and where the mistakes lie. For any checkpoint: the features
come before the head, so a self-supervised model has them too."""

from __future__ import annotations

import torch

from mnist_cli.errors import UserError


def to_2d(features: torch.Tensor, method: str, seed: int) -> torch.Tensor:
    """(N, 2) coordinates of (N, D) features: pca (the two directions of most variance), tsne
    (scikit-learn's t-SNE, started from the PCA) or umap (umap-learn)."""
    x = features.float()
    if method == "pca":
        centred = x - x.mean(0)
        _, _, directions = torch.linalg.svd(centred, full_matrices=False)
        return centred @ directions[:2].T
    if method == "tsne":
        try:
            from sklearn.manifold import TSNE
        except ImportError:
            raise UserError("eval.embedding=tsne needs scikit-learn: pip install 'mnist-cli[explain]'") from None
        return torch.from_numpy(TSNE(n_components=2, init="pca", random_state=seed).fit_transform(x.numpy()))
    try:
        import umap
    except ImportError:
        raise UserError("eval.embedding=umap needs umap-learn: pip install umap-learn (or use tsne or pca)") from None
    return torch.from_numpy(umap.UMAP(n_components=2, random_state=seed).fit_transform(x.numpy()))
