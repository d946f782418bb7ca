"""Classification metrics from predicted (or probabilities of) and true labels."""

from __future__ import annotations

from typing import Any

import torch


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """matrix[true, predicted] = count."""
    return torch.bincount(labels * num_classes + predictions, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def classification_report(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support, their macro averages, and the confusion matrix."""
    matrix = confusion_matrix(predictions.cpu(), labels.cpu(), num_classes).double()
    hits = matrix.diag()
    precision = hits / matrix.sum(0).clamp(min=1)
    recall = hits / matrix.sum(1).clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    support = matrix.sum(1)
    return {
        "accuracy": (hits.sum() / matrix.sum().clamp(min=1)).item(),
        "macro_precision": precision.mean().item(),
        "macro_recall": recall.mean().item(),
        "macro_f1": f1.mean().item(),
        "per_class": [
            {"precision": p, "recall": r, "f1": f, "support": int(s)}
            for p, r, f, s in zip(precision.tolist(), recall.tolist(), f1.tolist(), support.tolist())
        ],
        "confusion_matrix": matrix.long().tolist(),
    }


def mistakes_first(probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Every image's index: the mistakes first, the most confident one first, then the right
    answers, the most confident first (eval's gallery of the worst, explain's picks)."""
    confidence, predicted = probabilities.max(1)
    return (confidence + 2.0 * (predicted != labels)).argsort(descending=True)  # every mistake above every hit


def top_k_accuracy(probabilities: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Share of images whose true class is among the k most probable."""
    top = probabilities.topk(min(k, probabilities.shape[1]), dim=1).indices
    return (top == labels[:, None]).any(1).double().mean().item()


def calibration(probabilities: torch.Tensor, labels: torch.Tensor, bins: int) -> dict[str, Any]:
    """Expected calibration error: the images are binned by confidence (the top probability) in
    `bins` equal-width bins; ECE is the image-weighted mean |accuracy - mean confidence| over bins.
    Returns it with each bin's range, count, mean confidence and accuracy (the reliability diagram)."""
    confidence, predicted = probabilities.max(1)
    correct = (predicted == labels).double()
    index = (confidence.double() * bins).long().clamp(max=bins - 1)  # a confidence of 1.0 goes in the last bin
    count = torch.bincount(index, minlength=bins).double()
    mean_conf = torch.bincount(index, confidence.double(), minlength=bins) / count.clamp(min=1)
    accuracy = torch.bincount(index, correct, minlength=bins) / count.clamp(min=1)
    ece = ((count / len(labels)) * (accuracy - mean_conf).abs()).sum().item()
    return {
        "ece": ece,
        "bins": [
            {"low": i / bins, "high": (i + 1) / bins, "count": int(n), "confidence": c, "accuracy": a}
            for i, (n, c, a) in enumerate(zip(count.tolist(), mean_conf.tolist(), accuracy.tolist()))
        ],
    }


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T > 0 whose softmax(logits / T) has the lowest negative log-likelihood of
    `labels` (temperature scaling: one number, fitted on held-out images; the answers stay the same)."""
    logits, labels = logits.detach().float(), labels.detach()
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def nll() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(nll)
    return log_t.detach().exp().item()
