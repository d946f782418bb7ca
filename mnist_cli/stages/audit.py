"""`mnist audit`: read the labeled images (audit/images.py), get each one's probabilities from a
model that never trained on it (the checkpoint for the test split, K-fold cross-validation for the
training images: cross_validation.py), rank the suspects by confident learning (audit/issues.py), and
write suspects.csv, suspects.png and audit.json."""

from __future__ import annotations

import time
from typing import Any

from omegaconf import OmegaConf

from mnist_cli.audit.images import labeled_images
from mnist_cli.audit.issues import find_suspects
from mnist_cli.errors import UserError
from mnist_cli.report import plots
from mnist_cli.report.console import print_key_values
from mnist_cli.run_dir import csv_text, write_text
from mnist_cli.selection.model_outputs import probabilities
from mnist_cli.stages.context import StageContext
from mnist_cli.stages.cross_validation import out_of_fold_probabilities


def run(ctx: StageContext) -> dict[str, Any]:
    started = time.time()
    which = ctx.cfg.audit.split
    if which == "test" and ctx.cfg.ckpt is None:
        raise UserError(
            "audit.split=test is judged by a model trained without the test images: add ckpt=<run> "
            "(or audit.split=train|all to train audit.folds models here)"
        )
    if ctx.cfg.ckpt is not None:
        cfg, source = ctx.settle_with_source()
        found = labeled_images(cfg.dataset, cfg.preprocess, which)
    else:  # the files name the classes (a folder of images)
        found = labeled_images(ctx.cfg.dataset, ctx.cfg.preprocess, which)
        dataset = OmegaConf.merge(ctx.cfg.dataset, {"classes": found.classes})
        cfg, source = ctx.settle(dataset=dataset), None
    classes = list(cfg.dataset.classes)
    if which == "test":
        from mnist_cli.deploy.inference import ready

        loaded = ready(cfg, source.trained())
        if loaded.model.num_classes != len(classes):
            raise UserError(
                f"{source.name} predicts {loaded.model.num_classes} classes but {cfg.dataset.name} has {len(classes)}; "
                "audit it with the data set it was trained on"
            )
        given = probabilities(loaded, found.images, cfg.trainer.eval_batch_size)
        judged_by = source.name
    else:
        given = out_of_fold_probabilities(cfg, ctx.run, found, cfg.audit.folds, cfg.audit.seed)
        judged_by = f"{cfg.audit.folds}-fold cross-validation of {cfg.model.name}"
    suspects = find_suspects(found.labels, given, cfg.audit.rank_by, cfg.audit.top)

    rows = []
    for rank, (i, score) in enumerate(zip(suspects.order.tolist(), suspects.scores.tolist()), 1):
        p = given[i]
        rows.append(
            {
                "rank": rank,
                **found.rows[i],
                "given": classes[int(found.labels[i])],
                "suggested": classes[int(p.argmax())],
                "p_given": round(float(p[found.labels[i]]), 4),
                "p_suggested": round(float(p.max()), 4),
                "score": round(float(score), 6),
                "flagged": bool(suspects.flagged[i]),
            }
        )
    run = ctx.run
    write_text(run.path / "suspects.csv", csv_text(rows) if rows else "rank,given,suggested,score\n")
    shown = rows[: cfg.audit.show]
    if shown:
        plots.image_grid(
            [found.images[i, 0].numpy() for i in suspects.order[: len(shown)].tolist()],
            [f"#{r['rank']} given {r['given']}, {r['suggested']}? ({r['p_suggested']:.2f})" for r in shown],
            run.path / "suspects.png",
            columns=10,
        )
    results = {
        "split": which,
        "dataset": cfg.dataset.name,
        "images": len(found.labels),
        "judged_by": judged_by,
        "flagged": int(suspects.flagged.sum()),
        "listed": len(rows),
        "rank_by": cfg.audit.rank_by,
        "out_of_sample_acc": float((given.argmax(1) == found.labels).double().mean()),
        "wall_time_s": round(time.time() - started, 1),
    }
    run.write_json("audit.json", results)
    folder_data = "file" in found.rows[0]
    print_key_values(
        f"audit: {results['flagged']} of {len(found.labels)} labels flagged ({which} split of {cfg.dataset.name})",
        {
            "judged by": judged_by,
            "its accuracy on them": f"{results['out_of_sample_acc']:.4f} (out of sample)",
            "most suspect": ", ".join(
                f"{r.get('file', r.get('index'))} ({r['given']}->{r['suggested']})" for r in rows[:3]
            )
            or "none",
            "written": ", ".join(["suspects.csv", *(["suspects.png"] if shown else []), "audit.json"])
            + f" in {run.path}",
            **(
                {"next": f"mnist label dir={cfg.dataset.root} suspects={run.path / 'suspects.csv'}"}
                if folder_data and rows
                else {}
            ),
        },
    )
    return results
