"""What the terminal shows: a live progress bar while training, and rich tables of results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()


def training_progress(enabled: bool = True) -> Progress:
    """One bar per epoch with the running loss and accuracy; silent when not on a terminal
    (the per-epoch log lines say the same) or when not `enabled`."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.4f}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not (enabled and console.is_terminal),
    )


def print_key_values(title: str, values: dict[str, Any]) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in values.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)


def print_per_class(title: str, classes: Sequence[str], per_class: list[dict[str, float]]) -> None:
    table = Table(title=title, title_justify="left")
    for name in ("class", "precision", "recall", "f1", "support"):
        table.add_column(name, justify="left" if name == "class" else "right")
    for name, row in zip(classes, per_class):
        table.add_row(name, f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", str(row["support"]))
    console.print(table)


def print_members(members: list[dict[str, Any]], acc: float, loss: float) -> None:
    """An ensemble's members, each on its own, and the ensemble (the average of their probabilities)."""
    table = Table(title="Ensemble (test)", title_justify="left")
    for name in ("member", "accuracy", "loss"):
        table.add_column(name, justify="left" if name == "member" else "right")
    for member in members:
        table.add_row(member["checkpoint"], f"{member['test_acc']:.4f}", f"{member['test_loss']:.4f}")
    table.add_row(f"[bold]ensemble of {len(members)}[/]", f"[bold]{acc:.4f}[/]", f"[bold]{loss:.4f}[/]")
    console.print(table)


def print_class_counts(title: str, classes: Sequence[str], counts: dict[str, list[int]]) -> None:
    """Images per class (rows) in each split (columns)."""
    table = Table(title=title, title_justify="left")
    table.add_column("class")
    for split in counts:
        table.add_column(split, justify="right")
    for i, name in enumerate(classes):
        table.add_row(name, *(f"{c[i]:,}" for c in counts.values()))
    table.add_row("[bold]all[/]", *(f"[bold]{sum(c):,}[/]" for c in counts.values()))
    console.print(table)


def print_confusion(classes: Sequence[str], matrix: list[list[int]]) -> None:
    table = Table(title="Confusion matrix (rows: true, columns: predicted)", title_justify="left")
    table.add_column("")
    for name in classes:
        table.add_column(name[:8], justify="right")
    for i, (name, row) in enumerate(zip(classes, matrix)):
        cells = [f"[bold]{v}[/]" if i == j else (str(v) if v else "[dim]0[/]") for j, v in enumerate(row)]
        table.add_row(name[:12], *cells)
    console.print(table)


def print_robustness(
    clean: float, attacks: dict[str, dict[str, float]], attack_clean: float | None, corruptions: dict[str, float]
) -> None:
    """Accuracy under each condition and its change from the clean accuracy of the same images
    (attacks may cover only the first eval.attack_images)."""
    table = Table(title="Robustness (test accuracy)", title_justify="left")
    table.add_column("condition")
    table.add_column("accuracy", justify="right")
    table.add_column("change", justify="right")
    table.add_row("clean", f"{clean:.4f}", "")
    if attack_clean is not None and attack_clean != clean:
        table.add_row("clean, the attacked images", f"{attack_clean:.4f}", "")
    for name, by_eps in attacks.items():
        for eps, acc in by_eps.items():
            table.add_row(f"{name.upper()} eps={eps}", f"{acc:.4f}", f"{acc - (attack_clean or clean):+.4f}")
    for name, acc in corruptions.items():
        table.add_row(name, f"{acc:.4f}", f"{acc - clean:+.4f}")
    console.print(table)


def print_predictions(rows: list[dict[str, Any]], title: str) -> None:
    """predict's and explain's rows: file, label, confidence, the next classes; or the file's error."""
    table = Table(title=title, title_justify="left")
    for name in ("file", "label", "confidence", "next"):
        table.add_column(name, justify="right" if name == "confidence" else "left", overflow="fold")
    for row in rows:
        if row.get("error"):
            table.add_row(row["file"], "[red]unreadable[/]", "", f"[red]{row['error']}[/]")
        else:
            table.add_row(row["file"], f"[bold]{row['label']}[/]", f"{row['confidence']:.4f}", row["next"])
    console.print(table)


def print_export(rows: list[dict[str, Any]], title: str) -> None:
    table = Table(title=title, title_justify="left")
    for name in ("model", "size", "gzipped", "accuracy", "largest logit difference"):
        table.add_column(name, justify="left" if name == "model" else "right")
    for row in rows:
        diff = "" if row["max_diff"] is None else f"{row['max_diff']:.2e}"
        table.add_row(
            row["model"],
            f"{row['bytes'] / 1024:,.1f} KiB",
            f"{row['gzip_bytes'] / 1024:,.1f} KiB",
            f"{row['accuracy']:.4f}",
            diff,
        )
    console.print(table)
