"""Which unlabeled images to label next: each strategy ranks a pool and returns the `budget` images
it would have a person label first, with a score per pick (higher: picked sooner).

- random: the honest baseline every other strategy must beat.
- least_confidence, margin, entropy: the images the model is least sure of, from its probabilities.
- bald: where the model's samples (MC-dropout passes, or an ensemble's members) disagree most: the
  mutual information between the answer and the weights (Houlsby et al., 2011; Gal et al., 2017).
- k_center: a batch that covers the pool: greedily the image farthest from everything labeled or
  already picked, in the model's feature space (core-set, Sener & Savarese, 2018).
- typical: a cold start without a model: cluster the features into `budget` clusters and take the
  most typical image of each (TypiClust, Hacohen et al., 2022).

All work on tensors on the CPU, so each is tested on constructed numbers (tests/test_selection.py).
"""

from __future__ import annotations

import torch

from mnist_cli.errors import UserError

UNCERTAINTY = ("least_confidence", "margin", "entropy")
NEEDS_PROBABILITIES = (*UNCERTAINTY, "bald")
NEEDS_FEATURES = ("k_center", "typical")
STRATEGIES = ("random", *NEEDS_PROBABILITIES, *NEEDS_FEATURES)


def entropy(p: torch.Tensor) -> torch.Tensor:
    """(..., N) entropy in nats of (..., N, C) probabilities."""
    return -(p * p.clamp_min(1e-12).log()).sum(-1)


def uncertainty(strategy: str, p: torch.Tensor) -> torch.Tensor:
    """(N,) how unsure (N, C) probabilities are, by `strategy`: higher is less sure."""
    if strategy == "least_confidence":
        return 1 - p.max(1).values
    if strategy == "margin":  # a small gap between the two likeliest classes
        top2 = p.topk(2, dim=1).values
        return 1 - (top2[:, 0] - top2[:, 1])
    return entropy(p)


def bald(samples: torch.Tensor) -> torch.Tensor:
    """(N,) mutual information of (T, N, C) probabilities from T samples of the model: the entropy
    of their mean less the mean of their entropies (high where confident samples disagree)."""
    return entropy(samples.mean(0)) - entropy(samples).mean(0)


def top(scores: torch.Tensor, budget: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The `budget` highest scores' indices and scores (ties: the lower index first)."""
    order = torch.sort(scores, descending=True, stable=True).indices[:budget]
    return order, scores[order]


def k_center(
    features: torch.Tensor, budget: int, labeled: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy k-center: `budget` rows of (N, D) `features`, each the farthest (Euclidean) from the
    `labeled` features and the rows picked before it; its score is that distance. With nothing
    labeled the first pick is the row nearest the pool's mean."""
    x = features.float()
    if labeled is not None and len(labeled):
        nearest = torch.cdist(x, labeled.float()).min(1).values
    else:
        nearest = torch.full((len(x),), float("inf"))
    picks, scores = [], []
    for _ in range(budget):
        if torch.isinf(nearest).all():
            pick = int(((x - x.mean(0)) ** 2).sum(1).argmin())
        else:
            pick = int(nearest.argmax())
        picks.append(pick)
        scores.append(float(nearest[pick]) if not torch.isinf(nearest[pick]) else 0.0)
        nearest = torch.minimum(nearest, ((x - x[pick]) ** 2).sum(1).sqrt())
        nearest[pick] = -1.0  # never again
    return torch.tensor(picks, dtype=torch.long), torch.tensor(scores)


def typicality(x: torch.Tensor, neighbours: int, chunk: int = 4096) -> torch.Tensor:
    """(N,) the inverse of each row's mean distance to its `neighbours` nearest other rows (in
    chunks of rows, so a large cluster needs no N x N matrix)."""
    k = min(neighbours, len(x) - 1)
    if k == 0:
        return torch.zeros(len(x))
    mean_nearest = torch.cat(
        [torch.cdist(rows, x).topk(k + 1, dim=1, largest=False).values[:, 1:].mean(1) for rows in x.split(chunk)]
    )
    return 1 / (mean_nearest + 1e-8)


def typical(features: torch.Tensor, budget: int, seed: int, neighbours: int) -> tuple[torch.Tensor, torch.Tensor]:
    """TypiClust's cold start: k-means (scikit-learn) of the (N, D) features into `budget` clusters,
    and from each the image of highest typicality (the inverse of its mean distance to its
    `neighbours` nearest neighbours in the cluster), larger clusters first; where clusters are
    fewer than `budget` (duplicate images), the next most typical of each, in turn. The score is
    the typicality."""
    try:
        from sklearn.cluster import KMeans
    except ImportError:
        raise UserError("select.strategy=typical needs scikit-learn: pip install 'mnist-cli[label]'") from None
    x = features.float()
    clusters = torch.from_numpy(KMeans(n_clusters=budget, n_init=1, random_state=seed).fit_predict(x.numpy())).long()
    sizes = torch.bincount(clusters, minlength=budget)
    queues = []  # per cluster, largest first: its members, most typical first, with their typicality
    for c in torch.sort(sizes, descending=True, stable=True).indices.tolist():
        members = (clusters == c).nonzero().flatten()
        if not len(members):  # k-means leaves a cluster empty where images are duplicates
            continue
        scores = typicality(x[members], neighbours)
        order = torch.sort(scores, descending=True, stable=True).indices
        queues.append((members[order].tolist(), scores[order].tolist()))
    picks, scores = [], []
    for turn in range(max(len(members) for members, _ in queues)):
        for members, typical_scores in queues:
            if turn < len(members) and len(picks) < budget:
                picks.append(members[turn])
                scores.append(typical_scores[turn])
    return torch.tensor(picks, dtype=torch.long), torch.tensor(scores)


def check_budget(budget: int, size: int) -> None:
    if not 0 < budget <= size:
        raise UserError(
            f"select.budget={budget}: the pool holds {size} images; ask for 1 to {size}"
            if size
            else "the pool is empty: no unlabeled images to select from"
        )


def pick(
    strategy: str,
    budget: int,
    size: int,
    seed: int,
    probabilities: torch.Tensor | None = None,
    samples: torch.Tensor | None = None,
    features: torch.Tensor | None = None,
    labeled: torch.Tensor | None = None,
    neighbours: int = 20,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The `budget` images of a pool of `size` that `strategy` would have labeled first, and their
    scores: from the model's (N, C) `probabilities`, its (T, N, C) `samples` (bald), or the (N, D)
    `features` of the pool and of the `labeled` images (k_center, typical; `neighbours`: typical's)."""
    if strategy not in STRATEGIES:
        raise UserError(f"select.strategy={strategy}: not a strategy; use one of {', '.join(STRATEGIES)}")
    check_budget(budget, size)
    if strategy == "random":
        order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:budget]
        return order, torch.zeros(budget)
    if strategy in UNCERTAINTY:
        return top(uncertainty(strategy, probabilities), budget)
    if strategy == "bald":
        return top(bald(samples), budget)
    if strategy == "k_center":
        return k_center(features, budget, labeled)
    return typical(features, budget, seed, neighbours)
