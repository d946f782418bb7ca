"""`mnist select [ckpt=...] select.pool=... select.budget=N`: read the pool of unlabeled images
(selection/pool.py), read what the strategy needs from the model (selection/model_outputs.py; no
model: the pool's pixels), pick (selection/strategies.py), and write select.csv, select.json,
to_label.png and, for a folder pool, to_label/ with copies of the picks."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from mnist_cli.data.datasets import FOLDER_READER
from mnist_cli.errors import UserError
from mnist_cli.labeling.store import GUESSES
from mnist_cli.report import plots
from mnist_cli.report.console import print_key_values
from mnist_cli.run_dir import RunDir, csv_text, write_text
from mnist_cli.selection import model_outputs
from mnist_cli.selection.pool import Pool, folder_pool, training_split_pool
from mnist_cli.selection.strategies import NEEDS_FEATURES, NEEDS_PROBABILITIES, check_budget, pick
from mnist_cli.stages.context import StageContext
from mnist_cli.training.source import Source


def run(ctx: StageContext) -> dict[str, Any]:
    started = time.process_time()
    if ctx.cfg.ckpt is None:
        cfg, source = ctx.settle(), None
    else:
        cfg, source = ctx.settle_with_source()
    sel = cfg.select
    classes = list(cfg.dataset.classes) if cfg.dataset.classes is not None else None
    classifier = source is not None and source.objective == "supervised"
    strategy = sel.strategy if sel.strategy != "auto" else ("margin" if classifier else "typical")
    if strategy in NEEDS_PROBABILITIES and not classifier:
        raise UserError(
            f"select.strategy={strategy} needs a model's answers: give ckpt=<a run with a trained classifier>, "
            "or use select.strategy=typical or random for a cold start"
        )
    pool = read_pool(cfg, source)
    check_budget(sel.budget, len(pool))

    loaded = None
    if source is not None:
        from mnist_cli.deploy.inference import ready

        loaded = ready(cfg, source)
        if classifier and classes is not None and loaded.model.num_classes != len(classes):
            raise UserError(
                f"{source.name} predicts {loaded.model.num_classes} classes but dataset.classes names {len(classes)}; "
                "leave dataset.classes to the checkpoint, or select with a model of these classes"
            )
    size, bs = len(pool), cfg.trainer.eval_batch_size
    probabilities = model_outputs.probabilities(loaded, pool.images, bs) if classifier else None
    inputs: dict[str, Any] = {"probabilities": probabilities}
    if strategy == "bald":
        inputs["samples"] = model_outputs.samples(loaded, pool.images, bs, sel.mc_passes, sel.seed)
    if strategy in NEEDS_FEATURES:
        inputs["features"], inputs["labeled"] = pool_features(cfg, loaded, pool)
    picks, scores = pick(strategy, sel.budget, size, sel.seed, neighbours=sel.neighbours, **inputs)

    rows = []
    for rank, (i, score) in enumerate(zip(picks.tolist(), scores.tolist()), 1):
        row = {"rank": rank, **pool.rows[i]}
        if probabilities is not None:
            p = probabilities[i]
            row.update(guess=classes[int(p.argmax())], confidence=round(float(p.max()), 4))
        rows.append({**row, "score": round(score, 6)})
    written = write_picks(ctx.run, cfg, pool, picks, rows)
    if ctx.run.write_skipped(pool.skipped):
        written.append("skipped.txt")
    seconds = round(time.process_time() - started, 1)
    results = {
        "strategy": strategy,
        "budget": sel.budget,
        "pool": str(sel.pool) if sel.pool else f"{cfg.dataset.name} train",
        "pool_images": size,
        "excluded": pool.excluded,
        "unreadable": len(pool.skipped),
        "checkpoint": source.name if source else None,
        "mean_score": float(scores.mean()) if len(scores) else 0.0,
        "cpu_s": seconds,
    }
    ctx.run.write_json("select.json", {**results, "picks": rows})
    print_key_values(
        f"select: {len(rows)} of {size} images by {strategy}",
        {
            "pool": results["pool"]
            + (f" ({pool.excluded} left out: labeled already, or validation images)" if pool.excluded else ""),
            "model": results["checkpoint"] or "none (a cold start)",
            "CPU time": f"{seconds} s",
            "written": ", ".join(written) + f" in {ctx.run.path}",
            **({"next": f"mnist label dir={ctx.run.path / 'to_label'}"} if sel.pool else {}),
        },
    )
    return results


def read_pool(cfg: DictConfig, source: Source | None) -> Pool:
    sel = cfg.select
    if sel.pool is not None:
        exclude = sel.exclude
        if exclude is None and source is not None:  # the checkpoint's own labeled folder
            data = source.checkpoints[0]["config"]["dataset"]
            exclude = data["root"] if data["reader"]["_target_"] == FOLDER_READER else None
        return folder_pool(Path(sel.pool).expanduser(), Path(exclude).expanduser() if exclude else None, cfg.preprocess)
    trained_on = None
    if source is not None and source.objective == "supervised":
        saved = OmegaConf.create(source.checkpoints[0]["config"]["dataset"])
        trained_on = saved if saved.name == cfg.dataset.name else None
    return training_split_pool(cfg.dataset, trained_on)


def pool_features(cfg: DictConfig, loaded: Any, pool: Pool) -> tuple[torch.Tensor, torch.Tensor]:
    """The features of the pool and of the labeled images: the model's backbone's, or without a
    model the pixels' first select.pca_dims principal components (the pool's)."""
    if loaded is not None:
        bs = cfg.trainer.eval_batch_size
        return model_outputs.features(loaded, pool.images, bs), model_outputs.features(loaded, pool.labeled, bs)
    pixels = pool.images.flatten(1).float() / 255
    mean = pixels.mean(0)
    _, _, directions = torch.pca_lowrank(pixels - mean, q=min(cfg.select.pca_dims, *pixels.shape), center=False)
    project = lambda x: (x.flatten(1).float() / 255 - mean) @ directions
    return project(pool.images), project(pool.labeled)


def write_picks(run: RunDir, cfg: DictConfig, pool: Pool, picks: torch.Tensor, rows: list[dict[str, Any]]) -> list[str]:
    """select.csv, to_label.png and, for a folder pool, to_label/ (copies of the picked files, and
    guesses.csv for the labeling page)."""
    write_text(run.path / "select.csv", csv_text(rows))
    shown = rows[: cfg.select.show]
    titles = [f"#{r['rank']} {r['guess']} ({r['confidence']:.2f})" if "guess" in r else f"#{r['rank']}" for r in shown]
    images = [pool.images[i, 0].numpy() for i in picks[: len(shown)].tolist()]
    plots.image_grid(images, titles, run.path / "to_label.png", columns=8)
    written = ["select.csv", "select.json", "to_label.png"]
    if cfg.select.pool is not None:
        folder = run.path / "to_label"
        folder.mkdir()
        for row in rows:
            shutil.copy2(row["file"], folder / Path(row["file"]).name)
        guesses = [{"file": Path(r["file"]).name, "guess": r.get("guess", ""), "score": r["score"]} for r in rows]
        write_text(folder / GUESSES, csv_text(guesses))
        written.append("to_label/")
    return written
