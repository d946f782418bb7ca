"""PNG figures drawn with matplotlib (no display needed): learning curves of several runs, their
pseudo-labels' class shares (semi-supervised runs), a sweep's metric against each swept parameter,
and an evaluation's confusion matrix, reliability diagram and grid of images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, no window

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from mnist_cli.run_dir import atomic_path  # noqa: E402

LEGEND_MAX = 12  # runs named in a legend; more runs are drawn unnamed
PANELS_PER_ROW = 3


def save(fig: plt.Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def learning_curves(histories: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Train/val loss and val accuracy per epoch, one line colour per run."""
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, (label, rows) in enumerate(histories.items()):
        epochs = [row["epoch"] for row in rows]
        name = label if i < LEGEND_MAX else None
        (line,) = loss_ax.plot(epochs, [row["train_loss"] for row in rows], marker="o", markersize=3, label=name)
        loss_ax.plot(
            epochs, [row["val_loss"] for row in rows], linestyle="--", marker="o", markersize=3, color=line.get_color()
        )
        acc_ax.plot(
            epochs, [row["val_acc"] for row in rows], marker="o", markersize=3, color=line.get_color(), label=name
        )
    loss_ax.set(title="loss (solid: train, dashed: validation)", xlabel="epoch", ylabel="loss")
    acc_ax.set(title="validation accuracy", xlabel="epoch", ylabel="accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    acc_ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small", title="run")
    save(fig, path)


def pseudo_label_shares(histories: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Per semi-supervised run (up to LEGEND_MAX), each class's share of the epoch's pseudo-labels:
    a class the model confirms its own mistakes on rises away from the others."""
    runs = list(histories.items())[:LEGEND_MAX]
    rows = -(-len(runs) // PANELS_PER_ROW)
    columns = min(len(runs), PANELS_PER_ROW)
    fig, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.5 * rows), squeeze=False)
    for ax, (label, history) in zip(axes.flat, runs):
        epochs = [row["epoch"] for row in history]
        shares = np.array([row["pseudo_label_share"] for row in history])
        for c in range(shares.shape[1]):
            ax.plot(epochs, shares[:, c], label=str(c) if c < LEGEND_MAX else None)
        ax.set(title=f"{label}: drift {history[-1]['pseudo_label_drift']:.2f}", xlabel="epoch", ylabel="share")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in list(axes.flat)[len(runs) :]:
        ax.axis("off")
    axes.flat[0].legend(title="class", fontsize="x-small", ncol=2)
    fig.suptitle("each class's share of the pseudo-labels, per epoch")
    save(fig, path)


def as_number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def metric_vs_params(points: dict[str, list[tuple[Any, float | None]]], metric: str, path: Path) -> None:
    """One panel per swept parameter: each run's metric against its value of the parameter
    (numbers on a numeric axis, logarithmic when they span 20x or more; other values as categories).
    Runs without the metric (failed) or without the parameter (on its default) are left out."""
    cols = min(len(points), PANELS_PER_ROW)
    rows = -(-len(points) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 4 * rows), squeeze=False)
    for ax in axes.flat[len(points) :]:
        ax.set_visible(False)
    for ax, (param, pairs) in zip(axes.flat, points.items()):
        pairs = [(x, y) for x, y in pairs if x is not None and isinstance(y, (int, float))]
        numbers = [as_number(x) for x, _ in pairs]
        if pairs and all(n is not None for n in numbers):
            ax.scatter(numbers, [y for _, y in pairs])
            positive = [n for n in numbers if n > 0]
            if len(positive) == len(numbers) and max(positive) >= 20 * min(positive):
                ax.set_xscale("log")
        else:
            categories = sorted({str(x) for x, _ in pairs})
            ax.scatter([categories.index(str(x)) for x, _ in pairs], [y for _, y in pairs])
            ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
        ax.set(title=param, xlabel=param, ylabel=metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{metric} against each swept parameter")
    fig.tight_layout()
    save(fig, path)


def confusion_heatmap(matrix: list[list[int]], classes: list[str], path: Path) -> None:
    """Counts per (true, predicted) pair, coloured by each true class's share (row-normalized)."""
    counts = np.array(matrix)
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    size = max(5.0, 0.55 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(counts):
        if count:
            ax.text(
                j, i, str(count), ha="center", va="center", fontsize=8, color="white" if shares[i, j] > 0.5 else "black"
            )
    ax.set_xticks(range(len(classes)), classes, rotation=45 if max(map(len, classes)) > 2 else 0)
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix (colour: share of the true class)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    save(fig, path)


def reliability_diagram(bins: list[dict[str, float]], ece: float, path: Path) -> None:
    """Accuracy against confidence per bin (bars), the diagonal of perfect calibration, and how
    many images fall in each bin."""
    fig, (ax, count_ax) = plt.subplots(2, 1, figsize=(5.5, 6.5), height_ratios=[3, 1], sharex=True)
    lows = [b["low"] for b in bins]
    width = bins[0]["high"] - bins[0]["low"]
    filled = [b for b in bins if b["count"]]
    ax.bar(
        [b["low"] for b in filled],
        [b["accuracy"] for b in filled],
        width=width,
        align="edge",
        edgecolor="black",
        label="accuracy",
    )
    ax.bar(
        [b["low"] for b in filled],
        [b["confidence"] - b["accuracy"] for b in filled],
        bottom=[b["accuracy"] for b in filled],
        width=width,
        align="edge",
        color="red",
        alpha=0.3,
        label="gap to confidence",
    )
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=f"reliability diagram (ECE {ece:.4f})")
    ax.legend(loc="upper left")
    count_ax.bar(lows, [b["count"] for b in bins], width=width, align="edge", edgecolor="black")
    count_ax.set(xlabel="confidence (top class probability)", ylabel="images", yscale="log")
    save(fig, path)


def image_grid(images: list[Any], titles: list[str], path: Path, columns: int = 5) -> None:
    """Grayscale images (H x W arrays, 0-255) in a grid of up to `columns` per row, each with its
    title above it: one mosaic in one axes (a figure of many axes takes seconds to lay out)."""
    columns = max(1, min(columns, len(images)))
    rows = max(1, -(-len(images) // columns))
    lines = max((title.count("\n") + 1 for title in titles), default=1)
    cell = max(max(image.shape) for image in images) if images else 28
    gap, head = cell // 8, cell * 0.25 * lines  # between tiles, and room for a tile's title
    height, width = cell + head + gap, cell + gap
    mosaic = np.full((int(rows * height), int(columns * width)), np.nan)
    fig, ax = plt.subplots(figsize=(2.1 * columns, 2.1 * columns * mosaic.shape[0] / mosaic.shape[1]))
    for k, (image, title) in enumerate(zip(images, titles)):
        top, left = int((k // columns) * height + head), int((k % columns) * width)
        mosaic[top : top + image.shape[0], left : left + image.shape[1]] = image
        ax.text(left + image.shape[1] / 2, top - 1, title, ha="center", va="bottom", fontsize=8)
    ax.imshow(np.ma.masked_invalid(mosaic), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.axis("off")
    save(fig, path)


def explanation_grid(images: list[Any], maps: list[Any], titles: list[str], path: Path) -> None:
    """A row per image: the input (0-255), its attribution map (red: raised the answer's score,
    blue: lowered it, each map scaled to its own largest magnitude), the map's stronger tenth and
    up over the input, and the title (the top classes)."""
    fig, axes = plt.subplots(len(images), 4, figsize=(8.4, 2.1 * len(images)), squeeze=False)
    for row, image, found, title in zip(axes, images, maps, titles):
        scale = float(np.abs(found).max()) or 1.0
        row[0].imshow(image, cmap="gray", vmin=0, vmax=255)
        row[1].imshow(found, cmap="bwr", vmin=-scale, vmax=scale)
        row[2].imshow(image, cmap="gray", vmin=0, vmax=255)
        faint = np.abs(found) < 0.1 * scale  # left out of the overlay, so the digit shows through
        row[2].imshow(np.ma.masked_where(faint, found), cmap="bwr", vmin=-scale, vmax=scale, alpha=0.8)
        row[3].text(0.0, 0.5, title, fontsize=9, va="center", family="monospace")
        for ax, heading in zip(row, ("input", "map", "overlay", "")):
            ax.axis("off")
            ax.set_title(heading, fontsize=8)
    fig.tight_layout()
    save(fig, path)


def embedding_map(points: Any, labels: Any, wrong: Any, classes: list[str], title: str, path: Path) -> None:
    """2-D points coloured by class (a legend of the class names), the mistakes ringed in black."""
    fig, ax = plt.subplots(figsize=(8, 7))
    colours = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for c, name in enumerate(classes):
        mine = labels == c
        ax.scatter(points[mine, 0], points[mine, 1], s=3, color=colours(c % colours.N), label=name, alpha=0.6)
    if wrong is not None and wrong.any():
        ax.scatter(
            points[wrong, 0],
            points[wrong, 1],
            s=18,
            facecolors="none",
            edgecolors="black",
            linewidths=0.8,
            label="mistakes",
        )
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(markerscale=4, fontsize=7, loc="best", ncol=1 + len(classes) // 16)
    fig.tight_layout()
    save(fig, path)
