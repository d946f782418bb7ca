"""`mnist eval ckpt=...`: measure a checkpoint on the test split (accuracy, top-k, per-class
P/R/F1, calibration; with eval.* also TTA, adversarial attacks and corruptions); print it, write
eval.json and draw the confusion matrix, the reliability diagram (before and after the fitted
temperature), the most confidently wrong images (also as confidently_wrong.csv) and the test set's
features in 2-D (embedding.png; all a self-supervised checkpoint, with no head to measure, gets).
Several checkpoints (ckpt=[a,b,c] or a sweep's folder) are measured as an ensemble (the average of
their probabilities), each member's own accuracy beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from mnist_cli.data.batches import BatchPrep
from mnist_cli.data.datasets import load_dataset
from mnist_cli.data.split import Split
from mnist_cli.deploy.inference import ready
from mnist_cli.errors import UserError
from mnist_cli.evaluation.embedding import to_2d
from mnist_cli.evaluation.inference import EvalResult, chunks, classification_result, outputs
from mnist_cli.evaluation.metrics import calibration, classification_report, mistakes_first, top_k_accuracy
from mnist_cli.evaluation.robustness import Forward, attacked_accuracy, corrupted_accuracy, tta_probabilities
from mnist_cli.models.calibrated import Calibrated, uncalibrated
from mnist_cli.models.classifier import Classifier
from mnist_cli.models.ensemble import Ensemble
from mnist_cli.objectives.supervised import evaluate
from mnist_cli.report.console import (
    print_confusion,
    print_key_values,
    print_members,
    print_per_class,
    print_robustness,
)
from mnist_cli.run_dir import RunDir, csv_text, write_text
from mnist_cli.stages.context import StageContext
from mnist_cli.training.source import Source


def run(ctx: StageContext) -> dict[str, Any]:
    cfg, source = ctx.settle_with_source()
    run = ctx.run
    if len(source.paths) == 1 and source.objective != "supervised":
        return map_features(cfg, run, source)  # self-supervised: no head to measure, features to map
    loaded = ready(cfg, source.trained())  # one checkpoint's model, or an ensemble of several
    model, sources, device, prep = loaded.model, source.paths, loaded.device, loaded.prep
    classes = list(cfg.dataset.classes)
    if len(classes) != model.num_classes:
        raise UserError(
            f"{sources[0]} predicts {model.num_classes} classes but {cfg.dataset.name} has {len(classes)}; "
            f"finetune it on {cfg.dataset.name} first (mnist finetune ckpt=...)"
        )
    found = load_dataset(cfg.dataset, cfg.preprocess, train=False)
    run.write_skipped(found.skipped)
    test = found.test.to(device)

    def forward(x: torch.Tensor) -> torch.Tensor:  # pixels in [0, 1] -> logits
        with loaded.autocast():
            return model(prep.normalize(x)).float()

    members = []  # an ensemble's members, each measured on its own
    with loaded.autocast():
        tested, raw, features = measure(model, prep, test, cfg.trainer.eval_batch_size)
        for path, member in zip(sources, model.members if isinstance(model, Ensemble) else []):
            alone = evaluate(member, prep, test, cfg.trainer.eval_batch_size)
            members.append({"checkpoint": str(path), "test_acc": alone.acc, "test_loss": alone.loss})
    labels = test.labels.cpu()
    report = classification_report(tested.predictions, labels, len(classes))
    calibrated = calibration(tested.probabilities, labels, cfg.eval.calibration_bins)
    before = calibration(raw.probabilities, labels, cfg.eval.calibration_bins) if raw else None
    k = cfg.eval.top_k
    results = {
        "checkpoint": str(sources[0]) if len(sources) == 1 else [str(p) for p in sources],
        **({"skipped_files": len(found.skipped)} if found.skipped else {}),
        **({"members": members} if members else {}),
        "dataset": cfg.dataset.name,
        "classes": classes,
        "device": str(device),
        "test_images": len(test),
        "test_loss": tested.loss,
        "test_acc": tested.acc,
        f"top{k}_acc": top_k_accuracy(tested.probabilities, labels, k),
        "macro_f1": report["macro_f1"],
        "ece": calibrated["ece"],
        **(
            {"temperature": temperatures(model), "ece_uncalibrated": before["ece"], "test_loss_uncalibrated": raw.loss}
            if raw
            else {}
        ),
    }
    robustness = measure_robustness(
        cfg, forward, prep.pixels(test.images, train=False), test.labels, tested.predictions
    )
    results.update(robustness)
    figures = draw_figures(cfg, run, classes, test, tested.probabilities, report, calibrated, before)
    if cfg.eval.embedding != "none" and features is not None:
        results["embedding"] = draw_embedding(cfg, run, features, test, classes, tested.predictions)
        figures.append(run.path / "embedding.png")
    if run.path / "confidently_wrong.csv" in figures:
        results["confidently_wrong"] = "confidently_wrong.csv"
    run.write_json("eval.json", {**results, **report, "calibration_bins": calibrated["bins"]})

    if members:
        print_members(members, tested.acc, tested.loss)
    print_per_class(f"Per class ({cfg.dataset.name} test)", classes, report["per_class"])
    print_confusion(classes, report["confusion_matrix"])
    if "attacks" in robustness or "corruptions" in robustness:
        print_robustness(
            tested.acc,
            robustness.get("attacks", {}),
            robustness.get("attack_clean_acc"),
            robustness.get("corruptions", {}),
        )
    print_key_values(
        f"eval: {source.name}",
        {
            "test accuracy": tested.acc,
            f"top-{k} accuracy": results[f"top{k}_acc"],
            **({"with TTA": results["tta_acc"]} if "tta_acc" in results else {}),
            "test loss": tested.loss,
            "macro F1": report["macro_f1"],
            "calibration error (ECE)": f"{calibrated['ece']:.4f}"
            + (f" (uncalibrated {before['ece']:.4f}; temperature {results['temperature']})" if before else ""),
            "images": len(test),
            "written": ", ".join(str(p.relative_to(run.path)) for p in [run.path / "eval.json", *figures])
            + f" in {run.path}",
        },
    )
    return results


def measure(
    model: torch.nn.Module, prep: BatchPrep, test: Split, batch_size: int
) -> tuple[EvalResult, EvalResult | None, torch.Tensor | None]:
    """One pass over the test images: the model's result; without its temperature (None when it
    has none); and one classifier's backbone features, for the embedding (None for an ensemble,
    which is run as a whole)."""
    raw_model = uncalibrated(model)
    if not isinstance(raw_model, Classifier):
        raw = evaluate(raw_model, prep, test, batch_size) if raw_model is not model else None
        return evaluate(model, prep, test, batch_size), raw, None
    raw_model.eval()
    features = outputs(lambda x: raw_model.backbone(prep(x, train=False)), test.images, batch_size)
    with torch.no_grad():
        logits = raw_model.head(features).float()
    if isinstance(model, Calibrated):
        return (
            classification_result(logits / model.temperature, test.labels),
            classification_result(logits, test.labels),
            features,
        )
    return classification_result(logits, test.labels), None, features


def measure_robustness(
    cfg: DictConfig, forward: Forward, pixels: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor
) -> dict[str, Any]:
    """TTA accuracy, accuracy under attacks (with the clean accuracy of the attacked images) and
    under corruptions, as eval.* asks; `forward` maps pixels in [0, 1] to logits."""
    size = cfg.trainer.eval_batch_size
    found: dict[str, Any] = {}
    if cfg.eval.tta:
        with torch.no_grad():
            hits = sum(
                int((tta_probabilities(forward, x, cfg.eval.tta_shift).argmax(1) == y).sum())
                for x, y in chunks(pixels, labels, size=size)
            )
        found["tta_acc"] = hits / len(labels)
    if cfg.eval.attack:
        n = cfg.eval.attack_images or len(labels)
        found["attacks"] = attacked_accuracy(cfg.eval, forward, pixels[:n], labels[:n], size)
        found["attack_images"] = min(n, len(labels))
        found["attack_clean_acc"] = (predictions[:n] == labels[:n].cpu()).double().mean().item()
    if cfg.eval.corruptions:
        found["corruptions"] = corrupted_accuracy(cfg.eval.corruption, forward, pixels, labels, size)
    return found


def temperatures(model: torch.nn.Module) -> float | list[float]:
    """The fitted temperature of a calibrated model, or of each member of an ensemble."""
    if isinstance(model, Ensemble):
        return [temperatures(m) for m in model.members]
    return round(model.temperature, 4) if isinstance(model, Calibrated) else 1.0


def draw_figures(
    cfg: DictConfig,
    run: RunDir,
    classes: list[str],
    test: Split,
    probabilities: torch.Tensor,
    report: dict[str, Any],
    calibrated: dict[str, Any],
    before: dict[str, Any] | None,
) -> list[Path]:
    """confusion_matrix.png, reliability.png (and reliability_uncalibrated.png: `before` the
    temperature), and the most confidently wrong images: a grid and confidently_wrong.csv."""
    from mnist_cli.report import plots

    drawn = [run.path / "confusion_matrix.png", run.path / "reliability.png"]
    plots.confusion_heatmap(report["confusion_matrix"], classes, drawn[0])
    plots.reliability_diagram(calibrated["bins"], calibrated["ece"], drawn[1])
    if before:
        drawn.append(run.path / "reliability_uncalibrated.png")
        plots.reliability_diagram(before["bins"], before["ece"], drawn[-1])
    confidence, predicted = probabilities.max(1)
    labels = test.labels.cpu()
    mistakes = int((predicted != labels).sum())
    worst = mistakes_first(probabilities, labels)[: min(mistakes, cfg.eval.worst_images)]
    if len(worst):
        rows = [
            {
                "test_index": i,
                "true": classes[labels[i]],
                "predicted": classes[predicted[i]],
                "p_predicted": round(float(confidence[i]), 4),
                "p_true": round(float(probabilities[i, labels[i]]), 4),
            }
            for i in worst.tolist()
        ]
        drawn += [run.path / "confidently_wrong.png", run.path / "confidently_wrong.csv"]
        images = test.images[worst.to(test.images.device)].cpu()[:, 0].numpy()
        titles = [f"true {r['true']} ({r['p_true']:.2f})\nsaid {r['predicted']} ({r['p_predicted']:.2f})" for r in rows]
        plots.image_grid(list(images), titles, drawn[-2])
        write_text(drawn[-1], csv_text(rows))
    return drawn


def draw_embedding(
    cfg: DictConfig,
    run: RunDir,
    features: torch.Tensor,
    test: Split,
    classes: list[str],
    predictions: torch.Tensor | None,
) -> dict[str, Any]:
    """embedding.png: the test images' backbone `features` in 2-D (eval.embedding), coloured by
    their true class, the mistakes (given `predictions`) ringed."""
    from mnist_cli.report import plots

    with torch.autocast("cpu", enabled=False):  # the projection in float32, whatever the model ran in
        points = to_2d(features.float().cpu(), cfg.eval.embedding, cfg.trainer.seed)
    labels = test.labels.cpu()
    wrong = None if predictions is None else (predictions != labels).numpy()
    title = f"{cfg.dataset.name} test set: {cfg.model.name} features by {cfg.eval.embedding}" + (
        f", {int(wrong.sum())} mistakes ringed" if wrong is not None else ""
    )
    plots.embedding_map(points.numpy(), labels.numpy(), wrong, classes, title, run.path / "embedding.png")
    return {"method": cfg.eval.embedding, "file": "embedding.png", "points": len(points)}


def map_features(cfg: DictConfig, run: RunDir, source: Source) -> dict[str, Any]:
    """eval of a self-supervised checkpoint: no classifier to measure (finetune one for that), but
    the map of what its features make of the test set."""
    objective = source.objective
    if cfg.eval.embedding == "none":
        raise UserError(
            f"{cfg.ckpt} was pretrained with objective={objective}: it has no classifier to measure, only "
            "features to map; set eval.embedding=pca (or tsne), or finetune it first (mnist finetune ckpt=...)"
        )
    loaded = ready(cfg, source)
    test = load_dataset(cfg.dataset, cfg.preprocess, train=False).test.to(loaded.device)
    model, prep = loaded.model, loaded.prep
    model.eval()
    with loaded.autocast():
        features = outputs(lambda x: model.backbone(prep(x, train=False)), test.images, cfg.trainer.eval_batch_size)
    embedding = draw_embedding(cfg, run, features, test, list(cfg.dataset.classes), None)
    results = {
        "checkpoint": source.name,
        "objective": objective,
        "dataset": cfg.dataset.name,
        "test_images": len(test),
        "embedding": embedding,
    }
    run.write_json("eval.json", results)
    print_key_values(
        f"eval: {source.name} ({objective}: features only; finetune it for accuracy)",
        {"images": len(test), "written": f"eval.json, embedding.png in {run.path}"},
    )
    return results
