"""Which given labels look wrong, from out-of-sample class probabilities: confident learning
(Northcutt et al., 2021) as cleanlab implements it. An image is flagged when confident learning
counts it among the labels that disagree with what the model confidently sees (per-class
thresholds: the mean probability a class's own images get); images are ranked by a label quality
score, most suspect first."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mnist_cli.errors import UserError


@dataclass
class Suspects:
    order: np.ndarray  # image indices, most suspect first (the flagged ones and the `top` most suspect)
    scores: np.ndarray  # each one's label quality (0: surely wrong, 1: surely right), in that order
    flagged: np.ndarray  # (N,) bool: confident learning flags the image


def find_suspects(labels: torch.Tensor, probabilities: torch.Tensor, rank_by: str, top: int) -> Suspects:
    """Every flagged image and the `top` of lowest score whether flagged or not, ranked by `rank_by`
    (self_confidence | normalized_margin | confidence_weighted_entropy), most suspect first."""
    try:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError:
        raise UserError("mnist audit needs cleanlab: pip install 'mnist-cli[label]'") from None
    given = labels.numpy()
    p = probabilities.double().numpy()
    p = p / p.sum(1, keepdims=True)
    quality = get_label_quality_scores(given, p, method=rank_by)
    flagged = find_label_issues(given, p, filter_by="prune_by_noise_rate", n_jobs=1)  # no worker processes
    by_quality = np.argsort(quality, kind="stable")
    listed = flagged[by_quality] | (np.arange(len(by_quality)) < top)
    order = by_quality[listed]
    return Suspects(order, quality[order], flagged)
