"""Label efficiency: test accuracy from K labels per class, trained from scratch against pretrained
without labels and then finetuned. Prints one table (mean and spread over seeds).

    python benchmarks/label_efficiency.py [--data ../shared/data/mnist-10k] [--seeds 0 1 2]
        [--labels 10 100] [--pretrain-epochs 50] [--finetune-epochs 60] [--methods contrastive mae]

For each seed: (a) `mnist pretrain dataset.labels_per_class=K` (supervised, from scratch, on those
labels only); (b) `mnist pretrain experiment=cnn_contrastive` (SimCLR) on every training image, no labels, then
`mnist finetune finetune.strategy=linear` (the linear probe: frozen backbone) and
`finetune.strategy=full` on the same K labels per class; (c) the same with `experiment=vit_mae` (a masked
autoencoder of `model=vit_mini`), against that ViT from scratch with its supervised recipe. The K labels are a class-balanced sample
(dataset.split_seed = the seed). Every run picks its best epoch on the 500-image validation split,
the same for all methods.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from pretrain_cnn import DEFAULT_DATA  # noqa: E402

# Each method's pretraining recipe (an experiment preset), the model it trains, and that model's
# supervised recipe for the from-scratch baseline (the ViT's own: lr 1e-3, weight decay, cosine).
PRETRAIN = {"contrastive": "experiment=cnn_contrastive", "mae": "experiment=vit_mae"}
MODEL = {"contrastive": "cnn", "mae": "vit_mini"}
SCRATCH = {"contrastive": ["model=cnn"], "mae": ["experiment=vit_mini"]}


def mnist(cwd: Path, stage: str, *args: str) -> dict:
    """Run `mnist STAGE ARGS` in `cwd` and return the new run's summary.json."""
    before = set((cwd / "outputs" / stage).glob("*")) if (cwd / "outputs" / stage).exists() else set()
    result = subprocess.run([sys.executable, "-m", "mnist_cli", stage, *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"mnist {stage} {' '.join(args)} failed:\n{result.stderr}")
    [run] = set((cwd / "outputs" / stage).glob("*")) - before
    return {**json.loads((run / "summary.json").read_text()), "run": str(run)}


def spread(values: list[float]) -> str:
    mean = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.2%} ± {sd:.2%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--labels", type=int, nargs="+", default=[10, 100], help="labels per class")
    parser.add_argument("--pretrain-epochs", type=int, default=50)
    parser.add_argument("--finetune-epochs", type=int, default=60)
    parser.add_argument("--methods", nargs="+", default=["contrastive", "mae"], choices=list(PRETRAIN))
    args = parser.parse_args()

    common = [f"dataset.root={args.data}"]
    few = lambda k, seed: [
        f"dataset.labels_per_class={k}",
        f"dataset.split_seed={seed}",
        f"trainer.seed={seed}",  # noqa: E731
        f"trainer.epochs={args.finetune_epochs}",
        f"trainer.batch_size={min(10 * k, 256)}",
    ]
    results: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        for seed in args.seeds:
            for method in args.methods:
                model = MODEL[method]
                Console().print(f"seed {seed}: {method} pretraining ({model}) ...")
                ssl = mnist(
                    cwd,
                    "pretrain",
                    *common,
                    PRETRAIN[method],
                    f"trainer.seed={seed}",
                    f"trainer.epochs={args.pretrain_epochs}",
                )
                results.setdefault((f"{method}: k-NN, all training labels", 0), []).append(ssl["test_acc"])
                for k in args.labels:
                    Console().print(f"seed {seed}, {k} labels per class ...")
                    scratch = mnist(cwd, "pretrain", *common, *SCRATCH[method], *few(k, seed))
                    results.setdefault((f"{model}: from scratch", k), []).append(scratch["test_acc"])
                    for strategy, lr in (("linear", "1e-2"), ("full", "1e-3")):
                        tuned = mnist(
                            cwd,
                            "finetune",
                            f"ckpt={ssl['run']}",
                            *common,
                            *few(k, seed),
                            f"finetune.strategy={strategy}",
                            f"optimizer.lr={lr}",
                        )
                        results.setdefault((f"{method} + {strategy}", k), []).append(tuned["test_acc"])

    table = Table(title=f"Test accuracy from few labels, {args.data}, seeds {args.seeds} (mean ± sd)")
    table.add_column("method")
    for k in args.labels:
        table.add_column(f"{k} labels/class ({10 * k} labels)", justify="right")
    for method in dict.fromkeys(method for method, _ in results):
        if (method, 0) in results:  # the k-NN monitor votes with every training label: one figure
            table.add_row(method, spread(results[(method, 0)]), *[""] * (len(args.labels) - 1))
        else:
            table.add_row(method, *(spread(results[(method, k)]) for k in args.labels))
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
