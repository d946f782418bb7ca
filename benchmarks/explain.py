"""How fast and how faithful each attribution method of `mnist explain` is, on one checkpoint:

    python benchmarks/explain.py [--ckpt RUN] [--data ../shared/data/mnist] [--images 1000] [--picture docs/explain.png]

Per method (explain.method, with conf/explain/default.yaml's settings): the CPU time per image, and
the deletion score: the answer's probability as the pixels the map ranks highest are set to black,
5% more at a time up to all of them, averaged over the curve and the test images (the area under
the deletion curve: lower means the map found the pixels the answer rests on). A random order of
the pixels is the baseline. Without --ckpt it first trains one with the defaults
(`mnist pretrain dataset.root=DATA`). --picture: also `mnist explain` of the four most confidently
wrong test images, its explanations.png copied there.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from pretrain_cnn import DEFAULT_DATA  # noqa: E402
from recipes import cpu_name, run  # noqa: E402

from mnist_cli.config.compose import compose_config  # noqa: E402
from mnist_cli.data.batches import BatchPrep  # noqa: E402
from mnist_cli.data.datasets import load_split  # noqa: E402
from mnist_cli.evaluation.attribution import METHODS, attribute  # noqa: E402
from mnist_cli.training.source import Source  # noqa: E402

FRACTIONS = torch.linspace(0, 1, 21)  # of the pixels deleted, along the curve


def deletion_auc(model, x: torch.Tensor, targets: torch.Tensor, order: torch.Tensor, black: float) -> float:
    """The mean over FRACTIONS and images of p(target) with the first part of `order` set to black."""
    area = []
    for fraction in FRACTIONS.tolist():
        k = round(fraction * order.shape[1])
        deleted = x.flatten(1).clone().scatter_(1, order[:, :k], black).reshape(x.shape)
        with torch.no_grad():
            area.append(model(deleted).softmax(1).gather(1, targets[:, None])[:, 0])
    return torch.stack(area).mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", help="a run dir or .ckpt (default: train one with the defaults)")
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--picture", type=Path, help="where to copy an explanations.png of four test digits")
    args = parser.parse_args()
    console = Console(width=160)
    with tempfile.TemporaryDirectory() as tmp:
        source = Source.load(args.ckpt or run(Path(tmp), [f"dataset.root={args.data}"])["run_dir"], "outputs")
        ckpt = source.paths[0].resolve()  # (the picture's `mnist explain` runs in another folder)
        model = source.model().eval()  # the raw class scores, as explain attributes them
        data = OmegaConf.merge(source.checkpoints[0]["config"]["dataset"], {"root": args.data})
        explain = compose_config("stage=explain").explain  # the settings `mnist explain` uses
        prep = BatchPrep(data)
        test = load_split(data, "test").subset(torch.arange(args.images))
        x, black = prep(test.images, train=False), -data.mean / data.std
        with torch.no_grad():
            targets = model(x).argmax(1)
        table = Table(title=f"mnist explain on {args.images} test images of {args.data}; {ckpt}; {cpu_name()}, fp32")
        for column in ("method", "ms per image", "deletion AUC (lower: more faithful)"):
            table.add_column(column, justify="left" if column == "method" else "right")
        for method in METHODS:
            settings = OmegaConf.merge(explain, {"method": method})
            tic = time.perf_counter()
            maps, _ = attribute(model, x, targets, settings, black)
            seconds = time.perf_counter() - tic
            order = maps.flatten(1).argsort(1, descending=True)
            auc = deletion_auc(model, x, targets, order, black)
            console.print(f"{method}: {1000 * seconds / len(x):.2f} ms per image, deletion AUC {auc:.3f}")
            table.add_row(method, f"{1000 * seconds / len(x):.2f}", f"{auc:.3f}")
        shuffled = torch.rand(len(x), 784, generator=torch.Generator().manual_seed(0)).argsort(1)
        table.add_row("random order (baseline)", "", f"{deletion_auc(model, x, targets, shuffled, black):.3f}")
        console.print(table)
        if args.picture:
            explained = run(Path(tmp), [f"ckpt={ckpt}", "explain.images=4"], stage="explain")
            shutil.copy(Path(explained["run_dir"]) / "explanations.png", args.picture)
            console.print(f"picture: {args.picture}")


if __name__ == "__main__":
    main()
