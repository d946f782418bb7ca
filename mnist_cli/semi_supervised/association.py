"""Learning by association (Haeusser et al., 2017): a round trip labeled -> unlabeled -> labeled
through the backbone's features should end at an image of the class it started from.

From each labeled image the walk steps to a pool image with the softmax of their feature
similarities, and back the same way. The walker loss is the cross-entropy between where the round
trip ends and the uniform spread over the images of the starting class; the visit loss the
cross-entropy between how often each pool image is visited and the uniform spread over the pool,
so the walk uses all of it, not a few easy images. Together they pull the unlabeled images of a
writing style to the labeled class they resemble as a group, which the pseudo-labels of single
images (fixmatch.py) do not see."""

from __future__ import annotations

import torch


def association_loss(labeled: torch.Tensor, pool: torch.Tensor, labels: torch.Tensor, visit: float) -> torch.Tensor:
    """The walker loss plus `visit` times the visit loss, for (L, D) labeled and (U, D) pool features
    and the (L,) labels."""
    similarity = labeled.float() @ pool.float().T
    there = similarity.softmax(1)  # (L, U): labeled -> pool
    back = similarity.T.softmax(1)  # (U, L): pool -> labeled
    round_trip = there @ back  # (L, L)
    same = (labels[:, None] == labels[None, :]).float()
    target = same / same.sum(1, keepdim=True)
    walker = -(target * (round_trip + 1e-8).log()).sum(1).mean()
    visits = there.mean(0)  # (U,) how often the walk lands on each pool image
    visit_loss = -(visits + 1e-8).log().mean()
    return walker + visit * visit_loss
