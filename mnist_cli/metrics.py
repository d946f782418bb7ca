"""Classification metrics from predicted and true labels."""

from __future__ import annotations

from typing import Any

import torch


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """matrix[true, predicted] = count."""
    return torch.bincount(labels * num_classes + predictions, minlength=num_classes**2).reshape(num_classes, num_classes)


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
