"""Clean and robust accuracy of the CNN trained normally and with adversarial training
(trainer.adversarial=pgd), on real MNIST. Prints one table: for each way of training, its time
and its test accuracy clean, under FGSM and PGD at each eps, and under each corruption.

    python benchmarks/robustness.py [--data ../shared/data/mnist] [--epochs N] [--eps 0.1 0.3]
        [--attack-images 1000] [--train-eps 0.3]

Both runs are the default `mnist pretrain` (with --epochs when given); the adversarial one
trains on PGD images (7 steps at --train-eps). Each checkpoint is then measured with
`mnist eval eval.attack=[fgsm,pgd] eval.corruptions=true` (attacks on the first --attack-images
test images; PGD: 10 steps from a random start).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrain_cnn import DEFAULT_DATA  # noqa: E402
from recipes import cpu_name  # noqa: E402


def mnist(cwd: Path, stage: str, *args: str) -> dict:
    """Run `mnist STAGE ARGS` in `cwd`; the new run's summary.json (and eval.json, for eval)."""
    folder = cwd / "outputs" / stage
    before = set(folder.glob("*")) if folder.exists() else set()
    result = subprocess.run([sys.executable, "-m", "mnist_cli", stage, *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"mnist {stage} {' '.join(args)} failed:\n{result.stderr}")
    [run] = set(folder.glob("*")) - before
    record = json.loads((run / "summary.json").read_text())
    if stage == "eval":
        record.update(json.loads((run / "eval.json").read_text()))
    return {**record, "run": str(run)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, help="trainer.epochs (default: the default recipe's)")
    parser.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.3])
    parser.add_argument("--attack-images", type=int, default=1000)
    parser.add_argument("--train-eps", type=float, default=0.3)
    args = parser.parse_args()

    eps = f"[{','.join(map(str, args.eps))}]"
    trainings = {
        "normal": [],
        f"adversarial (PGD-7, eps {args.train_eps})": [
            "trainer.adversarial=pgd",
            f"trainer.adversarial_eps={args.train_eps}",
        ],
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        for name, extra in trainings.items():
            Console().print(f"training: {name} ...")
            epochs = [f"trainer.epochs={args.epochs}"] if args.epochs else []
            trained = mnist(cwd, "pretrain", f"dataset.root={args.data}", *epochs, *extra)
            measured = mnist(
                cwd,
                "eval",
                f"ckpt={trained['run']}",
                "eval.attack=[fgsm,pgd]",
                f"eval.eps={eps}",
                f"eval.attack_images={args.attack_images}",
                "eval.corruptions=true",
            )
            rows.append((name, trained, measured))

    attack_columns = [(attack, str(e)) for attack in ("fgsm", "pgd") for e in args.eps]
    corruptions = list(rows[0][2]["corruptions"])
    table = Table(
        title=f"Test accuracy of the default CNN ({rows[0][1]['epochs_run']} epochs, {args.data}); attacks on the first "
        f"{args.attack_images} test images; {cpu_name()}, precision {rows[0][1]['precision']}"
    )
    for column in ["training", "train time", "clean", *(f"{a.upper()} {e}" for a, e in attack_columns), *corruptions]:
        table.add_column(column, justify="left" if column == "training" else "right")
    for name, trained, measured in rows:
        table.add_row(
            name,
            f"{trained['train_time_s']:.0f} s",
            f"{measured['test_acc']:.2%}",
            *(f"{measured['attacks'][a][e]:.2%}" for a, e in attack_columns),
            *(f"{measured['corruptions'][c]:.2%}" for c in corruptions),
        )
    Console(width=220).print(table)


if __name__ == "__main__":
    main()
