"""`mnist eval ckpt=...`: measure a checkpoint on the test split; print it and write eval.json."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from mnist_cli.batches import BatchPrep
from mnist_cli.checkpoint import inherit_config, load_checkpoint, model_from_checkpoint, resolve_checkpoint
from mnist_cli.console import print_confusion, print_key_values, print_per_class
from mnist_cli.data import load_split
from mnist_cli.errors import UserError
from mnist_cli.metrics import classification_report
from mnist_cli.run_dir import RunDir
from mnist_cli.stages import task_overrides
from mnist_cli.stages.training import setup
from mnist_cli.trainer import Trainer


def run(cfg: DictConfig, run: RunDir, resume: dict[str, Any] | None) -> dict[str, Any]:
    device = setup(cfg)
    source = resolve_checkpoint(cfg.ckpt, cfg.outputs_root)
    ckpt = load_checkpoint(source)
    if ckpt["objective"] != "supervised":
        raise UserError(
            f"{source} was pretrained with objective={ckpt['objective']} and has no trained classifier head; "
            f"finetune it first (mnist finetune ckpt=... finetune.strategy=linear for a linear probe)"
        )
    inherit_config(cfg, ckpt, task_overrides())
    classes = list(cfg.dataset.classes)
    if len(classes) != ckpt["num_classes"]:
        raise UserError(
            f"{source} predicts {ckpt['num_classes']} classes but {cfg.dataset.name} has {len(classes)}; "
            f"finetune it on {cfg.dataset.name} first (mnist finetune ckpt=...)"
        )
    cfg.ckpt = str(source)
    run.write_config(cfg)
    model = model_from_checkpoint(ckpt).to(device)
    test = load_split(cfg.dataset, "test").to(device)
    tested = Trainer(cfg.trainer, device, BatchPrep(cfg.dataset)).evaluate(model, test)
    report = classification_report(tested.predictions, test.labels.cpu(), len(classes))
    results = {
        "checkpoint": str(source),
        "dataset": cfg.dataset.name,
        "device": str(device),
        "test_images": len(test),
        "test_loss": tested.loss,
        "test_acc": tested.acc,
        "macro_f1": report["macro_f1"],
    }
    run.write_json("eval.json", {**results, "classes": classes, **report})
    print_per_class(f"Per class ({cfg.dataset.name} test)", classes, report["per_class"])
    print_confusion(classes, report["confusion_matrix"])
    print_key_values(
        f"eval: {source}",
        {
            "test accuracy": tested.acc,
            "test loss": tested.loss,
            "macro F1": report["macro_f1"],
            "images": len(test),
            "written": str(run.path / "eval.json"),
        },
    )
    return results
