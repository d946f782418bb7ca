"""Each model and preset on this machine: parameters, train and eval images/s, and the test
accuracy its recipe reaches on real MNIST (by default the full 60,000 training images). Prints one table.

    python benchmarks/models.py [--data ../shared/data/mnist] [--recipes cnn vit_mini resnet18_strided]

Speed is measured on random batches of 128 (train step: forward, backward, AdamW step) and 1000
(eval forward). A recipe is a full `mnist pretrain` command run in a scratch folder; recipes that
need more time than a CPU allows can be left out of --recipes and their speed still reported.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from mnist_cli.config.compose import compose_config
from mnist_cli.models import build_model
from mnist_cli.training.runtime import pick_device

sys.path.insert(0, str(Path(__file__).parent))
from pretrain_cnn import DEFAULT_DATA, cli_pretrain  # noqa: E402

# preset name -> the overrides of its recipe
PRESETS = {
    "cnn": [],
    "vit": ["experiment=vit"],
    "vit_mini": ["experiment=vit_mini"],
    "resnet18": ["experiment=resnet18"],
    "resnet18_strided": ["experiment=resnet18", "model.stem=strided"],
}


def images_per_second(model: torch.nn.Module, train: bool, batch: int, device: torch.device, steps: int = 4) -> float:
    """fp32, uncompiled: the models' own speed, not the trainer's precision choices."""
    x = torch.randn(batch, 1, 28, 28, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train(train)
    for i in range(steps + 1):  # the first step warms up
        if i == 1:
            tic = time.perf_counter()
        if train:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        else:
            with torch.no_grad():
                model(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - tic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--recipes", nargs="*", default=["cnn", "vit_mini", "resnet18_strided"], choices=list(PRESETS))
    args = parser.parse_args()

    device = pick_device("auto")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    table = Table(title=f"Models on this machine ({where}); recipes on {args.data}")
    for column in (
        "preset",
        "overrides",
        "parameters",
        "train img/s",
        "eval img/s",
        "epochs",
        "test accuracy",
        "wall time",
    ):
        table.add_column(column, justify="left" if column in ("preset", "overrides") else "right")
    for name, overrides in PRESETS.items():
        cfg = compose_config(*overrides)
        model = build_model(cfg.model, 10).to(device, memory_format=torch.channels_last)
        params = sum(p.numel() for p in model.parameters())
        train_speed, eval_speed = (
            images_per_second(model, True, 128, device),
            images_per_second(model, False, 1000, device),
        )
        epochs = accuracy = wall = "-"
        if name in args.recipes:
            Console().print(f"running the {name} recipe ...")
            seconds, summary = cli_pretrain(args.data, *overrides)
            epochs, accuracy, wall = str(summary["epochs_run"]), f"{summary['test_acc']:.2%}", f"{seconds:.0f} s"
        else:
            epochs = str(cfg.trainer.epochs)
        table.add_row(
            name,
            " ".join(overrides) or "(defaults)",
            f"{params / 1e6:.2f}M",
            f"{train_speed:.0f}",
            f"{eval_speed:.0f}",
            epochs,
            accuracy,
            wall,
        )
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
