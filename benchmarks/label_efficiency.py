"""Label efficiency: test accuracy from K labels per class, by method, over seeds. Prints one table:
per method and number of labels, each seed's test accuracy, their min / mean / max, the CPU minutes
a run took, and the published figures for that many labels.

    python benchmarks/label_efficiency.py [--data ../shared/data/mnist] [--dataset mnist] [--seeds 0 1 2]
        [--labels 2 10 60 100 300] [--rows scratch contrastive+linear ...] [--threads 1]

--dataset names the data set's config (fashion_mnist with --data /usr/share/datasets/fashion-mnist).

The default labels per class are 20 labels of the 60,000 training images and the standard
protocol's 100 / 600 / 1,000 / 3,000 (the rest of the training split is the unlabeled pool).

Rows (--rows picks some; all by default):
  scratch               `mnist pretrain dataset.labels_per_class=K` (the CNN on those labels only)
  fixmatch              `mnist pretrain dataset.labels_per_class=K semi_supervised=fixmatch` (and the
                        rest of the training split without labels; fixmatch's own trainer settings)
  contrastive+linear    `mnist pretrain experiment=cnn_contrastive` (SimCLR, no labels), then
                        `mnist finetune finetune.strategy=linear` (a linear probe: frozen backbone)
  contrastive+full      ... then finetune.strategy=full
  contrastive+fixmatch  ... then finetune with semi_supervised=fixmatch
  vit_scratch           `experiment=vit_mini` on the K labels only
  mae+linear            `mnist pretrain experiment=vit_mae` (masked autoencoder of vit_mini), then a linear probe
  mae+full              ... then full finetuning
  mae+fixmatch          ... then finetune with semi_supervised=fixmatch
The rows that learn from the labels alone train 60 epochs (the contrastive linear probe: 200) in
batches of min(10 K, 256), no more (trainer.min_steps=0) (with 100 labels, the default batch of 128 would make one step an epoch). Each seed pretrains once per method (its CPU minutes are the "<method> pretraining" row) and sets
trainer.seed and dataset.split_seed (which K labels per class are kept). Every run keeps its last
epoch (trainer.select=last), the same for all methods. CPU minutes: user + system time of the
process (both cores count), so a figure does not depend on what else the machine was doing.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from pretrain_cnn import DEFAULT_DATA  # noqa: E402
from recipes import cpu_name  # noqa: E402

# method -> its pretraining preset (no labels)
PRETRAIN = {"contrastive": "experiment=cnn_contrastive", "mae": "experiment=vit_mae"}
# row -> (the method it finetunes, or None: trained from scratch by `mnist pretrain`; its overrides;
# whether it learns from the labels alone)
ROWS = {
    "scratch": (None, ["model=cnn"], True),
    "fixmatch": (None, ["model=cnn", "semi_supervised=fixmatch"], False),
    # the probe on frozen SimCLR features needs a larger lr and more epochs than one on MAE features
    "contrastive+linear": (
        "contrastive",
        ["finetune.strategy=linear", "optimizer.lr=3e-2", "trainer.epochs=200"],
        True,
    ),
    "contrastive+full": ("contrastive", ["finetune.strategy=full", "optimizer.lr=1e-3"], True),
    "contrastive+fixmatch": ("contrastive", ["semi_supervised=fixmatch"], False),
    "vit_scratch": (None, ["experiment=vit_mini"], True),
    "mae+linear": ("mae", ["finetune.strategy=linear", "optimizer.lr=1e-2"], True),
    "mae+full": ("mae", ["finetune.strategy=full", "optimizer.lr=1e-3"], True),
    "mae+fixmatch": ("mae", ["semi_supervised=fixmatch"], False),
}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def mnist(cwd: Path, stage: str, *args: str) -> tuple[dict, float]:
    """Run `mnist STAGE ARGS` in `cwd`: (the new run's summary.json, the CPU seconds it took)."""
    before = set((cwd / "outputs" / stage).glob("*")) if (cwd / "outputs" / stage).exists() else set()
    cpu = cpu_seconds()
    result = subprocess.run([sys.executable, "-m", "mnist_cli", stage, *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"mnist {stage} {' '.join(args)} failed:\n{result.stderr}")
    [run] = set((cwd / "outputs" / stage).glob("*")) - before
    return {**json.loads((run / "summary.json").read_text()), "run": str(run)}, cpu_seconds() - cpu


# labels -> what papers report for that many MNIST labels (their error rates as accuracy)
PUBLISHED = {
    20: "Improved GAN 83.2% (Salimans et al., 2016)",
    100: "Ladder 98.94%, VAT 98.64%, Improved GAN 99.07%, Bad GAN 99.20%",
    1000: "Ladder 99.16% (Rasmus et al., 2015)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--dataset", default="mnist", help="the data set's config (conf/dataset/)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--labels", type=int, nargs="+", default=[2, 10, 60, 100, 300], help="labels per class")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--threads", type=int, help="trainer.num_threads of every run (two scripts side by side: 1)")
    args = parser.parse_args()
    args.data = str(Path(args.data).resolve())  # the runs start in a temporary folder

    console = Console(width=200)
    accs: dict[tuple[str, int], list[float]] = {}
    cpu: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        for seed in args.seeds:
            seeded = [f"dataset={args.dataset}", f"dataset.root={args.data}", f"trainer.seed={seed}"]
            if args.threads:
                seeded.append(f"trainer.num_threads={args.threads}")
            pretrained = {}
            for method in dict.fromkeys(ROWS[row][0] for row in args.rows if ROWS[row][0]):
                summary, seconds = mnist(cwd, "pretrain", *seeded, PRETRAIN[method])
                pretrained[method] = summary["run"]
                cpu.setdefault((f"{method} pretraining", 0), []).append(seconds)
            for k in args.labels:
                few = [f"dataset.labels_per_class={k}", f"dataset.split_seed={seed}"]
                for row in args.rows:
                    method, overrides, labels_only = ROWS[row]
                    if labels_only:  # 60 epochs in batches of min(10 K, 256), unless the row says otherwise
                        usual = {"trainer.epochs": 60, "trainer.batch_size": min(10 * k, 256), "trainer.min_steps": 0}
                        given = {o.partition("=")[0] for o in overrides}
                        overrides = [*overrides, *(f"{key}={v}" for key, v in usual.items() if key not in given)]
                    if method is None:
                        summary, seconds = mnist(cwd, "pretrain", *seeded, *few, *overrides)
                    else:
                        summary, seconds = mnist(
                            cwd, "finetune", f"ckpt={pretrained[method]}", *seeded, *few, *overrides
                        )
                    accs.setdefault((row, k), []).append(summary["test_acc"])
                    cpu.setdefault((row, k), []).append(seconds)
                    console.print(
                        f"seed {seed}, {k} labels/class, {row}: {summary['test_acc']:.2%}, {seconds / 60:.1f} CPU min"
                    )

    table = Table(
        title=f"Test accuracy from few labels, dataset={args.dataset} {args.data}, seeds {args.seeds}; {cpu_name()}"
    )
    for column in ("method", "labels", "per seed", "min", "mean", "max", "CPU min a run", "published"):
        table.add_column(column, justify="left" if column in ("method", "per seed", "published") else "right")
    for (name, k), minutes in cpu.items():
        mean_minutes = f"{sum(minutes) / len(minutes) / 60:.1f}"
        if k == 0:  # pretraining: no labels, one run per seed
            table.add_row(name, "-", "", "", "", "", mean_minutes, "")
            continue
        got = accs[(name, k)]
        table.add_row(
            name,
            f"{10 * k:,}",
            " ".join(f"{a:.2%}" for a in got),
            f"{min(got):.2%}",
            f"{sum(got) / len(got):.2%}",
            f"{max(got):.2%}",
            mean_minutes,
            PUBLISHED.get(10 * k, ""),
        )
    console.print(table)


if __name__ == "__main__":
    main()
