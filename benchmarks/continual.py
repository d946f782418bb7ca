"""Learning without forgetting, two experiments.

1. Class-incremental Split-MNIST: five tasks of two digits (0-1, 2-3, 4-5, 6-7, 8-9), learned one
after another from each task's training images alone, then tested on all ten digits.

    python benchmarks/continual.py [--data ../shared/data/mnist] [--seeds 0 1 2]
        [--replay 0 50 200 1000] [--out continual.jsonl]

Each task is a folder of IDX files holding only its digits (train and test; the data set names its
two classes), written once into a temporary folder. Task 1 is `mnist pretrain dataset.root=<task 1>
dataset.classes=['0','1']` (the defaults: a 2-class head); tasks 2-5 are `mnist finetune
ckpt=<the previous run> dataset.root=<task t> dataset.classes=[...] finetune.classes=grow
finetune.replay.size=<R>`: the head grows by the task's two classes, its old rows kept; R = 0 is
plain finetuning (the baseline, which forgets), otherwise the replayed images are the checkpoint's
memory of at most R images (finetune.replay). Last, `mnist
eval` of the final run on the whole test split (all ten digits) gives the row's accuracy, and the
accuracy on each task's digits. Rows go to --out as they finish; the table is drawn from all rows.

2. Corrections (--corrections): a default `mnist pretrain` run is served, 50 digits of another
collection (scikit-learn's bundled UCI digits: 8x8 scans of 43 writers, drawn at 64x64; 5 a class,
drawn with the seed; --slant and --bold give them one writer's consistent style: a slant and a
broad pen) are sent to POST /feedback with their true labels, and `mnist finetune
ckpt=<run> dataset=folder dataset.root=outputs/feedback` runs with nothing else on the line. Both
models then read 250 other digits of that collection (25 a class, `mnist predict`) and MNIST's
test split (`mnist eval`). Rows go to --out as they finish; the table (each seed, then the gains'
min and mean) is drawn from all the rows there.

    python benchmarks/continual.py --corrections [--data ../shared/data/mnist] [--seeds 0]
        [--slant 0.7 --bold 5] [--finetune KEY=VALUE ...] [--out corrections.jsonl]

The finetune's gate (finetune.max_forgetting) measures the same two things on the MNIST test split
and the folder's held-back test images; its verdict is in the row (`promote`). --finetune adds
overrides to the finetune's command line (the figures of the defaults are those without).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from pretrain_cnn import DEFAULT_DATA  # noqa: E402
from recipes import cpu_name, run  # noqa: E402

TASKS = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]


def write_tasks(data: str, into: Path) -> list[Path]:
    """One folder of IDX files per task, with only its digits."""
    from omegaconf import OmegaConf

    from mnist_cli.config.compose import compose_config
    from mnist_cli.data.idx import write_idx
    from mnist_cli.data.idx_files import read_split

    cfg = compose_config(f"dataset.root={data}", "dataset.download=false").dataset
    splits = {name: read_split(cfg, name) for name in ("train", "test")}
    folders = []
    for digits in TASKS:
        folder = into / f"task_{digits[0]}{digits[1]}"
        folder.mkdir(parents=True)
        for name, prefix in (("train", "train"), ("test", "t10k")):
            split = splits[name]
            keep = torch.isin(split.labels, torch.tensor(digits))
            write_idx(folder / f"{prefix}-images-idx3-ubyte", split.images[keep][:, 0])
            # labels numbered within the task: its data set names its two classes (task_args)
            write_idx(folder / f"{prefix}-labels-idx1-ubyte", (split.labels[keep] - digits[0]).to(torch.uint8))
        folders.append(folder)
    OmegaConf.clear_resolvers()  # compose_config registered them; the subprocesses register their own
    return folders


def task_args(folder: Path, digits: tuple[int, int]) -> list[str]:
    return [f"dataset.root={folder}", f"dataset.classes=['{digits[0]}','{digits[1]}']"]


def command(cwd: Path, stage: str, *args: str) -> Path:
    """Run `mnist <stage> ARGS` in `cwd` (a failure ends the benchmark); the run directory it wrote."""
    done = subprocess.run([sys.executable, "-m", "mnist_cli", stage, *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"mnist {stage} {' '.join(args)} failed:\n{done.stderr}")
    return max((cwd / "outputs" / stage).glob("*"), key=lambda p: p.stat().st_mtime)


def evaluate(cwd: Path, run_dir: str, data: str) -> dict:
    """`mnist eval` of the run on the whole test split: overall and per-task accuracy."""
    record = json.loads((command(cwd, "eval", f"ckpt={run_dir}", f"dataset.root={data}") / "eval.json").read_text())
    per_class = record["per_class"]  # recall: each digit's accuracy

    def right(d: int) -> float:
        return per_class[d]["recall"] * per_class[d]["support"]

    return {
        "test_acc": record["test_acc"],
        "task_acc": [round(sum(map(right, ds)) / sum(per_class[d]["support"] for d in ds), 4) for ds in TASKS],
    }


def one_chain(cwd: Path, tasks: list[Path], data: str, seed: int, replay: int, first: dict) -> dict:
    tic = time.perf_counter()
    previous = first["run_dir"]
    for folder, digits in zip(tasks[1:], TASKS[1:]):
        previous = run(
            cwd,
            [f"ckpt={previous}", *task_args(folder, digits), "finetune.classes=grow", f"finetune.replay.size={replay}",
             f"trainer.seed={seed}"],
            stage="finetune",
        )["run_dir"]  # fmt: skip
    return {"seed": seed, "replay": replay, **evaluate(cwd, previous, data), "wall_s": round(time.perf_counter() - tic)}


def style_digits(into: Path, seed: int, slant: float = 0.0, bold: int = 0) -> tuple[Path, Path]:
    """(50 digits to correct, 250 to measure) of scikit-learn's bundled digits, 5 and 25 a class,
    as 64x64 PNG files named <n>_<label>.png, in one writer's consistent style: `slant`, each leans
    right by this shear (0.7: 35 degrees); `bold`, strokes widened by a max filter of this many
    pixels (a broad pen; 0: as scanned)."""
    import random

    from PIL import Image, ImageFilter
    from sklearn.datasets import load_digits

    found = load_digits()
    order = list(range(len(found.target)))
    random.Random(seed).shuffle(order)
    teach, measure = into / "teach", into / "measure"
    teach.mkdir(parents=True)
    measure.mkdir()
    taken: dict[int, int] = defaultdict(int)
    for i in order:
        label = int(found.target[i])
        taken[label] += 1
        folder = teach if taken[label] <= 5 else measure if taken[label] <= 30 else None
        if folder is not None:
            pixels = (found.images[i] / 16 * 255).astype("uint8")  # light ink on black, as MNIST
            image = Image.fromarray(pixels).resize((64, 64), Image.Resampling.BILINEAR)
            if slant:  # output (x, y) takes input (x + slant * (y - 32), y): the top leans right
                image = image.transform((64, 64), Image.Transform.AFFINE, (1, slant, -slant * 32, 0, 1, 0))
            if bold:
                image = image.filter(ImageFilter.MaxFilter(bold))
            image.save(folder / f"{i}_{label}.png")
    return teach, measure


def style_accuracy(cwd: Path, run_dir: str, folder: Path) -> float:
    """`mnist predict` of the run on the folder's files: the share read as their names' labels."""
    import csv

    out = command(cwd, "predict", f"ckpt={run_dir}", f"input={folder}")
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    return sum(row["label"] == Path(row["file"]).stem.split("_")[1] for row in rows) / len(rows)


def send_corrections(cwd: Path, run_dir: str, teach: Path) -> None:
    """Serve the run and POST each digit of `teach` to /feedback with its label."""
    import httpx

    server = subprocess.Popen(
        [sys.executable, "-m", "mnist_cli", "serve", f"ckpt={run_dir}", "serve.port=0"],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        url = next(line for line in server.stdout if " at http").split(" at ")[1].split()[0]
        while httpx.get(url + "ready").status_code != 200:
            time.sleep(0.2)
        for file in sorted(teach.glob("*.png")):
            sent = httpx.post(
                url + f"feedback?label={file.stem.split('_')[1]}",
                content=file.read_bytes(),
                headers={"content-type": "image/png"},
            )
            sent.raise_for_status()
    finally:
        server.terminate()
        server.wait(timeout=60)


def corrections(data: str, seed: int, overrides: list[str], slant: float, bold: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        teach, measure = style_digits(cwd / "style", seed, slant, bold)
        served = run(cwd, [f"dataset.root={data}", f"trainer.seed={seed}"])["run_dir"]
        send_corrections(cwd, served, teach)
        tuned = run(
            cwd, [f"ckpt={served}", "dataset=folder", "dataset.root=outputs/feedback", *overrides], stage="finetune"
        )
        row = {"seed": seed, "slant": slant, "bold": bold, "overrides": overrides}
        row["corrections"] = len(list(teach.glob("*.png")))
        row |= {"promote": tuned.get("promote"), "gate": tuned.get("gate")}
        for name, run_dir in (("served", served), ("finetuned", tuned["run_dir"])):
            row[f"{name}_style_acc"] = style_accuracy(cwd, run_dir, measure)
            tested = command(cwd, "eval", f"ckpt={run_dir}", "dataset=mnist", f"dataset.root={data}")
            row[f"{name}_mnist_acc"] = json.loads((tested / "eval.json").read_text())["test_acc"]
        return row


def table(rows: list[dict]) -> Table:
    grouped = defaultdict(list)
    for row in rows:
        grouped[row["replay"]].append(row)
    out = Table(title=f"Split-MNIST, class-incremental, 5 tasks; accuracy on all 10 digits ({cpu_name()})")
    for column in ("method", "seeds", "min", "mean", "max", "per task (mean): 0-1 2-3 4-5 6-7 8-9"):
        out.add_column(column)
    for replay, group in sorted(grouped.items()):
        accs = [r["test_acc"] for r in group]
        tasks = [sum(r["task_acc"][t] for r in group) / len(group) for t in range(len(TASKS))]
        out.add_row(
            "plain finetune" if replay == 0 else f"replay, memory of {replay}",
            " ".join(str(r["seed"]) for r in sorted(group, key=lambda r: r["seed"])),
            f"{min(accs):.2%}", f"{sum(accs) / len(accs):.2%}", f"{max(accs):.2%}",
            " ".join(f"{a:.2f}" for a in tasks),
        )  # fmt: skip
    return out


def corrections_table(rows: list[dict]) -> Table:
    """Per seed, the served and the finetuned run on the style's other digits and on MNIST's test
    split, then the gains' min and mean over seeds, for each style and set of overrides."""
    out = Table(title=f"Corrections: 50 digits sent to POST /feedback, then `mnist finetune` ({cpu_name()})")
    for column in (
        "style",
        "overrides",
        "seed",
        "other digits: served -> finetuned",
        "MNIST test: served -> finetuned",
        "promote",
    ):
        out.add_column(column)
    grouped = defaultdict(list)
    for row in rows:
        grouped[(row["slant"], row["bold"], " ".join(row["overrides"]))].append(row)
    for (slant, bold, overrides), group in grouped.items():
        style = f"slant {slant}, pen {bold}" if slant or bold else "as scanned"
        for r in sorted(group, key=lambda r: r["seed"]):
            out.add_row(
                style, overrides or "(defaults)", str(r["seed"]),
                f"{r['served_style_acc']:.1%} -> {r['finetuned_style_acc']:.1%}",
                f"{r['served_mnist_acc']:.2%} -> {r['finetuned_mnist_acc']:.2%}", str(r["promote"]),
            )  # fmt: skip
        style_gain = [100 * (r["finetuned_style_acc"] - r["served_style_acc"]) for r in group]
        mnist_change = [100 * (r["finetuned_mnist_acc"] - r["served_mnist_acc"]) for r in group]
        out.add_row(
            style, overrides or "(defaults)", "min / mean",
            f"{min(style_gain):+.1f} / {sum(style_gain) / len(group):+.1f} points",
            f"{min(mnist_change):+.2f} / {sum(mnist_change) / len(group):+.2f} points", "", end_section=True,
        )  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--replay", type=int, nargs="+", default=[0, 50, 200, 1000])
    parser.add_argument("--out", type=Path, default=Path("continual.jsonl"))
    parser.add_argument("--corrections", action="store_true", help="the corrections experiment instead")
    parser.add_argument("--finetune", nargs="*", default=[], help="overrides of the corrections' finetune")
    parser.add_argument("--slant", type=float, default=0.0, help="corrections: the style's slant (a shear)")
    parser.add_argument("--bold", type=int, default=0, help="corrections: the style's pen width (max filter)")
    args = parser.parse_args()
    if args.corrections:
        for seed in args.seeds:
            row = corrections(str(Path(args.data).resolve()), seed, args.finetune, args.slant, args.bold)
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(row, flush=True)
        Console().print(corrections_table([json.loads(line) for line in args.out.read_text().splitlines()]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        tasks = write_tasks(str(Path(args.data).resolve()), cwd / "tasks")
        for seed in args.seeds:
            first = run(cwd, [*task_args(tasks[0], TASKS[0]), f"trainer.seed={seed}"])
            for replay in args.replay:
                row = one_chain(cwd, tasks, str(Path(args.data).resolve()), seed, replay, first)
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(row, flush=True)
    Console().print(table([json.loads(line) for line in args.out.read_text().splitlines()]))


if __name__ == "__main__":
    main()
