"""Active learning with an oracle: how many labels each selection strategy needs.

    python benchmarks/active_learning.py [--data ../shared/data/mnist] [--seeds 0 1 2]
        [--strategies random margin entropy bald k_center] [--rounds 20 40 80 160 320 640 1000]
        [--threads 1] [--out results.jsonl] [--plot curves.png]

Each seed starts from `--rounds[0]` random labels of MNIST's training split (its validation images,
dataset.val_size, left out), trains the default CNN on the labels alone, measures it on the test
split, and asks the strategy (mnist_cli/selection/strategies.py, as `mnist select` runs them) for
the next round's images from the rest of the split; the oracle is the split's own labels. Every
round trains a fresh model with the recipe of label_efficiency.py's `scratch` row (60 epochs in
batches of min(labels, 256), no minimum of steps, the last epoch kept), so rounds and strategies
differ only in which images carry labels. bald uses MC dropout (select.mc_passes passes through the
head's dropout). Rows go to --out as they are measured (a second process can run other strategies
into the same file); the table and the PNG are drawn from all rows there: per strategy and label
count, test accuracy over seeds (min / mean), and the labels the mean first reaches 95%, 98% and
99% with. CPU seconds: this process's user + system time for the training, selection and test.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from pretrain_cnn import DEFAULT_DATA  # noqa: E402
from recipes import cpu_name  # noqa: E402

THRESHOLDS = (0.95, 0.98, 0.99)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def train(cfg, labeled, val, device, work: Path):
    """A fresh default CNN trained on `labeled` alone; the model at its last epoch."""
    from mnist_cli.data.split import empty_like
    from mnist_cli.models import build_model
    from mnist_cli.run_dir import RunDir
    from mnist_cli.stages.training import TrainingSplits, training_task
    from mnist_cli.training.optim import build_optimizer, build_scheduler
    from mnist_cli.training.trainer import Trainer

    splits = TrainingSplits(cfg.dataset, labeled, val, val, empty_like(labeled), len(labeled), False, [])
    model = build_model(cfg.model, len(cfg.dataset.classes)).to(device)
    task = training_task(cfg, model, splits, device)
    trainer = Trainer(cfg.trainer, device, task)
    length = trainer.length(len(labeled))
    optimizer = build_optimizer(cfg.optimizer, model)
    scheduler = build_scheduler(cfg.scheduler, optimizer, length.steps_per_epoch, length.total_steps)
    info = {
        "config": {"model": dict(cfg.model)},
        "model_name": cfg.model.name,
        "num_classes": 10,
        "objective": "supervised",
    }
    trainer.fit(model, labeled, val, optimizer, scheduler, RunDir(work), info, None)
    return model.eval()


def one_run(data: str, strategy: str, seed: int, rounds: list[int], threads: int | None, out: Path) -> None:
    from mnist_cli.config.compose import compose_config
    from mnist_cli.data.batches import BatchPrep
    from mnist_cli.data.datasets import load_dataset
    from mnist_cli.deploy.inference import Inference
    from mnist_cli.evaluation.inference import outputs
    from mnist_cli.selection import model_outputs
    from mnist_cli.selection.strategies import NEEDS_FEATURES, pick
    from mnist_cli.training.runtime import pick_precision, setup

    base = [f"dataset.root={data}", "dataset.download=false", "model=cnn", "trainer.epochs=60", "trainer.min_steps=0"]
    base += [
        "trainer.select=last",
        f"trainer.seed={seed}",
        "calibrate=false",
        f"trainer.num_threads={threads or 'null'}",
    ]
    probe = compose_config(*base)
    mc_passes = compose_config("stage=select").select.mc_passes  # what `mnist select` uses
    device = setup(probe)
    found = load_dataset(probe.dataset)
    pool, test = found.train, found.test
    watch = found.val.subset(
        torch.arange(200)
    )  # the trainer's per-epoch check; the last epoch is kept whatever it says
    labeled = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[: rounds[0]]
    for n, following in zip(rounds, [*rounds[1:], None]):
        started = cpu_seconds()
        cfg = compose_config(*base, f"trainer.batch_size={min(n, 256)}")
        with tempfile.TemporaryDirectory() as work:
            model = train(cfg, pool.subset(labeled), watch, device, Path(work))
        loaded = Inference(model, device, pick_precision(cfg.trainer.precision, device), BatchPrep(cfg.dataset))
        with loaded.autocast():
            predicted = outputs(lambda x, m=model, p=loaded.prep: m(p(x, train=False)), test.images, 1000).argmax(1)
        acc = float((predicted.cpu() == test.labels).double().mean())
        if following is not None:
            rest = torch.ones(len(pool), dtype=torch.bool)
            rest[labeled] = False
            left = rest.nonzero().flatten()
            images = pool.images[left]
            inputs = {}
            if strategy in ("least_confidence", "margin", "entropy"):
                inputs["probabilities"] = model_outputs.probabilities(loaded, images, 1000)
            if strategy == "bald":
                inputs["samples"] = model_outputs.samples(loaded, images, 1000, mc_passes, seed)
            if strategy in NEEDS_FEATURES:
                inputs["features"] = model_outputs.features(loaded, images, 1000)
                inputs["labeled"] = model_outputs.features(loaded, pool.images[labeled], 1000)
            picks, _ = pick(strategy, following - n, len(left), seed + n, **inputs)
            labeled = torch.cat([labeled, left[picks]])
        row = {
            "strategy": strategy,
            "seed": seed,
            "labels": n,
            "test_acc": acc,
            "cpu_s": round(cpu_seconds() - started, 1),
        }
        print(json.dumps(row), flush=True)
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")


def report(out: Path, plot: Path | None) -> None:
    from rich.console import Console
    from rich.table import Table

    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    accs: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    cpu: dict[str, float] = defaultdict(float)
    seeds: dict[str, set[int]] = defaultdict(set)
    for r in rows:
        accs[r["strategy"]][r["labels"]].append(r["test_acc"])
        cpu[r["strategy"]] += r["cpu_s"]
        seeds[r["strategy"]].add(r["seed"])
    counts = sorted({r["labels"] for r in rows})
    table = Table(title=f"Active learning on MNIST, the default CNN on the labels alone; {cpu_name()}")
    table.add_column("strategy")
    table.add_column("seeds")
    for n in counts:
        table.add_column(f"{n}", justify="right")
    for t in THRESHOLDS:
        table.add_column(f"to {t:.0%}", justify="right")
    table.add_column("CPU min / seed", justify="right")
    for strategy, by_n in accs.items():
        means = {n: sum(v) / len(v) for n, v in by_n.items()}
        cells = [f"{means[n]:.2%} ({min(by_n[n]):.2%})" if n in by_n else "" for n in counts]
        reached = [next((str(n) for n in counts if n in means and means[n] >= t), "-") for t in THRESHOLDS]
        table.add_row(
            strategy,
            " ".join(map(str, sorted(seeds[strategy]))),
            *cells,
            *reached,
            f"{cpu[strategy] / 60 / len(seeds[strategy]):.1f}",
        )
    Console(width=220).print(table)
    print("cells: mean test accuracy over the seeds (their min); 'to X%': the first label count whose mean reaches X")
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for strategy, by_n in accs.items():
            ns = sorted(by_n)
            ax.plot(
                ns,
                [sum(by_n[n]) / len(by_n[n]) for n in ns],
                marker="o",
                label=strategy,
                linestyle="--" if strategy == "random" else "-",
            )
        ax.set(
            xscale="log",
            xlabel="labels",
            ylabel="test accuracy (mean over seeds)",
            ylim=(0.8, 1.0),
            title="Active learning on MNIST",
        )
        ax.axhline(0.99, color="grey", linewidth=0.5)
        ax.legend()
        fig.tight_layout()
        fig.savefig(plot, dpi=120)
        print(f"curves: {plot}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--strategies", nargs="+", default=["random", "margin", "entropy", "bald", "k_center"])
    parser.add_argument("--rounds", type=int, nargs="+", default=[20, 40, 80, 160, 320, 640, 1000])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (two processes side by side: 1)")
    parser.add_argument("--out", type=Path, default=Path("active_learning.jsonl"))
    parser.add_argument("--plot", type=Path, default=None, help="a PNG of the curves")
    parser.add_argument("--report-only", action="store_true", help="draw the table and PNG from --out, run nothing")
    args = parser.parse_args()
    if not args.report_only:
        for strategy in args.strategies:
            for seed in args.seeds:
                one_run(args.data, strategy, seed, args.rounds, args.threads, args.out)
    report(args.out, args.plot)


if __name__ == "__main__":
    main()
