"""Check a composed config before any heavy import; each problem is one line saying how to fix it."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_cli.config.stages import stages
from mnist_cli.errors import UserError
from mnist_cli.training import distributed
from mnist_cli.training.tasks import TASKS


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def positive_int(v: Any) -> bool:
    return _is_int(v) and v >= 1


def non_negative_int(v: Any) -> bool:
    return _is_int(v) and v >= 0


def positive(v: Any) -> bool:
    return _is_num(v) and v > 0


def non_negative(v: Any) -> bool:
    return _is_num(v) and v >= 0


def fraction(v: Any) -> bool:
    return _is_num(v) and 0 <= v < 1


def one_of(*choices: Any) -> Callable[[Any], bool]:
    return lambda v: v in choices


def optional(rule: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or rule(v)


def boolean(v: Any) -> bool:
    return isinstance(v, bool)


def attacks(v: Any) -> bool:
    names = [v] if isinstance(v, str) or v is None else list(v) if isinstance(v, Sequence) else [0]
    return all(name in (None, "fgsm", "pgd") for name in names)


def val_size(v: Any) -> bool:
    return positive_int(v) or (_is_num(v) and 0 < v < 1)


def device(v: Any) -> bool:
    return isinstance(v, str) and re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v) is not None


def views_rules(prefix: str) -> dict[str, tuple[Callable[[Any], bool], str]]:
    """The rules of a block of random views' strengths (data/views.py)."""
    probability = (lambda v: _is_num(v) and 0 <= v <= 1, "a probability in [0, 1]")
    share = (lambda v: _is_num(v) and 0 < v <= 1, "a fraction in (0, 1]")
    return {
        f"{prefix}.crop_min_area": share,
        f"{prefix}.max_rotate": (non_negative, "a number of degrees >= 0"),
        f"{prefix}.blur_prob": probability,
        f"{prefix}.blur_sigma": (positive, "a number of pixels > 0"),
        f"{prefix}.erase_prob": probability,
        f"{prefix}.erase_min": share,
        f"{prefix}.erase_max": share,
    }


# key -> (rule, what a good value looks like), checked in this order
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    # first: optimizer.lr of a finetune is finetune.lr.<strategy>
    "finetune.strategy": (one_of("full", "linear", "partial", "lora"), "full, linear, partial or lora"),
    "dataset.format": (one_of("idx", "folder", "csv"), "idx, folder or csv"),
    "dataset.val_size": (val_size, "a fraction between 0 and 1 (e.g. 0.05) or a count >= 1"),
    "dataset.test_size": (lambda v: _is_num(v) and 0 < v < 1, "a fraction between 0 and 1 (e.g. 0.1)"),
    "dataset.split_seed": (_is_int, "an integer"),
    "dataset.on_bad_file": (one_of("skip", "fail"), "skip or fail"),
    "dataset.workers": (optional(positive_int), "null or a whole number of processes >= 1"),
    "dataset.first_label": (non_negative_int, "a whole number >= 0"),
    "dataset.mean": (optional(_is_num), "null (measured on the training images) or a number"),
    "dataset.std": (optional(positive), "null (measured on the training images) or a number > 0"),
    "dataset.augment.max_shift": (non_negative, "a number of pixels >= 0"),
    "dataset.augment.max_rotate": (non_negative, "a number of degrees >= 0"),
    "dataset.augment.max_scale": (fraction, "a fraction in [0, 1)"),
    "dataset.augment.hflip": (boolean, "true or false"),
    "model.channels": (
        lambda v: isinstance(v, Sequence) and len(v) > 0 and all(map(positive_int, v)),
        "a list of widths >= 1, e.g. [16,32,64]",
    ),
    "model.convs": (positive_int, "a whole number of conv layers per stage >= 1"),
    "model.hidden": (non_negative_int, "a whole number >= 0 (0: no hidden layer)"),
    "model.head_dropout": (fraction, "a number in [0, 1)"),
    "model.dropout": (fraction, "a number in [0, 1)"),
    "model.stem": (one_of("small", "strided"), "small or strided"),
    "model.patch": (lambda v: positive_int(v) and 28 % v == 0, "a patch size that divides 28: 4 or 7 (or 1, 2, 14)"),
    "model.dim": (positive_int, "a whole number >= 1"),
    "model.depth": (positive_int, "a whole number >= 1"),
    "model.heads": (positive_int, "a whole number >= 1"),
    "model.mlp_ratio": (positive, "a number > 0"),
    "model.pool": (one_of("cls", "mean"), "cls or mean"),
    "optimizer.lr": (positive, "a number > 0 (e.g. 1e-3)"),
    "optimizer.weight_decay": (non_negative, "a number >= 0"),
    "optimizer.momentum": (fraction, "a number in [0, 1)"),
    "optimizer.rho": (fraction, "a number in [0, 1)"),
    "scheduler.warmup_epochs": (non_negative, "a number of epochs >= 0"),
    "scheduler.step_epochs": (positive, "a number of epochs > 0"),
    "scheduler.gamma": (positive, "a factor > 0 (e.g. 0.7)"),
    "scheduler.min_lr_ratio": (lambda v: _is_num(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "scheduler.pct_start": (lambda v: _is_num(v) and 0 < v < 1, "a fraction in (0, 1)"),
    "scheduler.div_factor": (positive, "a number > 0"),
    "scheduler.final_div_factor": (positive, "a number > 0"),
    "trainer.epochs": (positive_int, "a whole number >= 1"),
    "trainer.min_steps": (non_negative_int, "a whole number of optimizer steps >= 0 (0: no minimum)"),
    "trainer.warn_under_steps": (non_negative_int, "a whole number of optimizer steps >= 0 (0: never warn)"),
    "trainer.max_steps": (optional(positive_int), "null or a whole number of optimizer steps >= 1"),
    "trainer.batch_size": (positive_int, "a whole number >= 1"),
    "trainer.accumulate_steps": (positive_int, "a whole number >= 1 (1: no accumulation)"),
    "trainer.eval_batch_size": (positive_int, "a whole number >= 1"),
    "trainer.device": (device, "auto, cpu, cuda, cuda:<n> or mps"),
    "trainer.precision": (one_of("auto", "fp32", "bf16", "fp16"), "auto, fp32, bf16 or fp16"),
    "trainer.compile": (lambda v: isinstance(v, bool), "true or false"),
    "trainer.target_accuracy": (optional(lambda v: _is_num(v) and 0 < v <= 1), "null or an accuracy in (0, 1]"),
    "trainer.stop_at_target": (boolean, "true or false"),
    "trainer.label_smoothing": (fraction, "a number in [0, 1)"),
    "trainer.grad_clip": (optional(positive), "null or a max gradient norm > 0"),
    "trainer.seed": (_is_int, "an integer"),
    "trainer.adversarial": (one_of(None, "fgsm", "pgd"), "null, fgsm or pgd"),
    "trainer.adversarial_eps": (lambda v: _is_num(v) and 0 < v <= 1, "a strength in (0, 1], e.g. 0.3"),
    "trainer.adversarial_steps": (positive_int, "a whole number >= 1"),
    "trainer.adversarial_step_size": (optional(positive), "null or a step size > 0"),
    "trainer.adversarial_random_start": (boolean, "true or false"),
    "trainer.deterministic": (lambda v: isinstance(v, bool), "true or false"),
    "trainer.checkpoint_every_steps": (non_negative_int, "a whole number >= 0 (0: at epoch ends only)"),
    "trainer.select": (one_of("val_acc", "val_loss", "last"), "val_acc, val_loss or last"),
    "trainer.ema": (boolean, "true or false"),
    "trainer.ema_decay": (lambda v: _is_num(v) and 0 < v < 1, "a decay in (0, 1), e.g. 0.99"),
    "trainer.early_stopping_patience": (non_negative_int, "a whole number >= 0 (0: off)"),
    "trainer.log_every_steps": (positive_int, "a whole number >= 1"),
    "trainer.num_threads": (optional(positive_int), "null or a whole number >= 1"),
    "objective.name": (lambda v: v in TASKS, f"one of the registered training tasks ({', '.join(TASKS)})"),
    "objective.mask_ratio": (lambda v: _is_num(v) and 0 < v < 1, "a fraction in (0, 1), e.g. 0.75"),
    "objective.decoder_dim": (positive_int, "a whole number >= 1"),
    "objective.decoder_depth": (positive_int, "a whole number >= 1"),
    "objective.decoder_heads": (positive_int, "a whole number >= 1"),
    "objective.temperature": (positive, "a number > 0 (e.g. 0.2)"),
    "objective.projection_hidden": (positive_int, "a whole number >= 1"),
    "objective.projection_dim": (positive_int, "a whole number >= 1"),
    "objective.knn_k": (positive_int, "a whole number >= 1"),
    "objective.knn_temperature": (positive, "a number > 0 (e.g. 0.07)"),
    **views_rules("objective.views"),
    "semi_supervised.ratio": (positive_int, "a whole number >= 1 (unlabeled images per labeled image)"),
    "semi_supervised.threshold": (lambda v: _is_num(v) and 0 <= v <= 1, "a probability in [0, 1], e.g. 0.95"),
    "semi_supervised.weight": (non_negative, "a number >= 0"),
    **views_rules("semi_supervised.strong"),
    "distill.alpha": (lambda v: _is_num(v) and 0 <= v <= 1, "a weight in [0, 1]"),
    "distill.temperature": (positive, "a number > 0, e.g. 4"),
    "finetune.lora_rank": (positive_int, "a whole number >= 1"),
    "finetune.lora_alpha": (positive, "a number > 0"),
    "finetune.unfreeze_blocks": (positive_int, "a whole number of blocks >= 1"),
    "finetune.layer_decay": (lambda v: _is_num(v) and 0 < v <= 1, "a factor in (0, 1] (1.0: off)"),
    "logger.mode": (one_of("auto", "online", "offline"), "auto, online or offline"),
    "calibrate": (boolean, "true or false"),
    "format": (one_of("onnx", "torchscript", "int8"), "onnx, torchscript or int8"),
    "prune": (fraction, "a share of the weights in [0, 1), e.g. 0.5"),
    "export.check_images": (optional(positive_int), "null or a whole number >= 1"),
    "export.tolerance": (positive, "a number > 0, e.g. 1e-3"),
    "export.max_accuracy_drop": (lambda v: _is_num(v) and 0 <= v <= 1, "an accuracy difference in [0, 1], e.g. 0.01"),
    "export.opset": (lambda v: positive_int(v) and v >= 18, "an ONNX opset version >= 18"),
    "preprocess.mode": (one_of("mnist_like", "resize"), "mnist_like or resize (choose with preprocess=resize)"),
    "preprocess.invert": (lambda v: v in ("auto", True, False), "auto, true or false"),
    "preprocess.threshold": (fraction, "a fraction in [0, 1)"),
    "preprocess.digit_size": (lambda v: positive_int(v) and v <= 28, "a whole number of pixels from 1 to 28"),
    "explain.method": (
        one_of("integrated_gradients", "saliency", "occlusion", "gradcam"),
        "integrated_gradients, saliency, occlusion or gradcam",
    ),
    "explain.pick": (one_of("wrong", "first"), "wrong or first"),
    "explain.images": (positive_int, "a whole number of images >= 1"),
    "explain.show": (positive_int, "a whole number of images >= 1"),
    "explain.ig_steps": (positive_int, "a whole number of steps >= 1"),
    "explain.occlusion_window": (lambda v: positive_int(v) and v <= 28, "a whole number of pixels from 1 to 28"),
    "explain.occlusion_stride": (positive_int, "a whole number of pixels >= 1"),
    "explain.batch_size": (positive_int, "a whole number >= 1"),
    "predict.top_k": (positive_int, "a whole number >= 1"),
    "predict.show": (positive_int, "a whole number of images >= 1"),
    "eval.top_k": (positive_int, "a whole number >= 1"),
    "eval.calibration_bins": (positive_int, "a whole number of bins >= 1"),
    "eval.worst_images": (non_negative_int, "a whole number >= 0 (0: no grid)"),
    "eval.embedding": (one_of("pca", "tsne", "umap", "none"), "pca, tsne, umap or none"),
    "eval.tta": (boolean, "true or false"),
    "eval.tta_shift": (positive_int, "a whole number of pixels >= 1"),
    "eval.attack": (attacks, "null, fgsm, pgd or a list of them, e.g. [fgsm,pgd]"),
    "eval.eps": (
        lambda v: isinstance(v, Sequence) and len(v) > 0 and all(_is_num(e) and 0 < e <= 1 for e in v),
        "a list of strengths in (0, 1], e.g. [0.1,0.3]",
    ),
    "eval.pgd_steps": (positive_int, "a whole number >= 1"),
    "eval.pgd_step_size": (optional(positive), "null or a number > 0"),
    "eval.pgd_random_start": (boolean, "true or false"),
    "eval.pgd_seed": (_is_int, "an integer"),
    "eval.attack_images": (optional(positive_int), "null or a whole number >= 1"),
    "eval.corruptions": (boolean, "true or false"),
    "eval.corruption.seed": (_is_int, "an integer"),
    "eval.corruption.noise_std": (non_negative, "a number >= 0"),
    "eval.corruption.blur_sigma": (positive, "a number of pixels > 0"),
    "eval.corruption.shift_pixels": (non_negative, "a number of pixels >= 0"),
    "eval.corruption.rotate_degrees": (non_negative, "a number of degrees >= 0"),
    "eval.corruption.contrast": (lambda v: _is_num(v) and 0 <= v <= 1, "a fraction in [0, 1]"),
    "serve.host": (lambda v: isinstance(v, str) and v != "", "an address such as 127.0.0.1 (0.0.0.0: every interface)"),
    "serve.port": (lambda v: _is_int(v) and 0 <= v <= 65535, "a port number from 0 to 65535 (0: any free port)"),
    "serve.token": (optional(lambda v: isinstance(v, (str, int)) and str(v) != ""), "null or a token string"),
    "serve.max_batch": (positive_int, "a whole number of images >= 1"),
    "serve.max_wait_ms": (non_negative, "a number of milliseconds >= 0"),
    "serve.max_queue": (positive_int, "a whole number of images >= 1"),
    "serve.threads": (positive_int, "a whole number of threads >= 1"),
    "serve.max_bytes": (positive_int, "a whole number of bytes >= 1, e.g. 4194304 (4 MiB)"),
    "serve.max_images": (positive_int, "a whole number of images >= 1"),
    "serve.max_pixels": (positive_int, "a whole number of pixels >= 1"),
    "serve.shutdown_timeout_s": (positive, "a number of seconds > 0"),
    "dataset.labels_per_class": (optional(positive_int), "null or a whole number >= 1"),
    "dataset.label_fraction": (optional(lambda v: _is_num(v) and 0 < v <= 1), "null or a fraction in (0, 1]"),
}


def validate(cfg: DictConfig) -> None:
    """Raise UserError naming the first bad value, what it should be, and the key to set."""
    for key, (rule, want) in RULES.items():
        if OmegaConf.select(cfg, key, default="<absent>") == "<absent>":
            continue  # this option of the group has no such field
        value = OmegaConf.select(cfg, key)
        if not rule(value):
            raise UserError(f"{key}={value!r} is not valid: it must be {want}; fix it with {key}=...")

    if cfg.model.name == "vit" and cfg.model.dim % cfg.model.heads:
        raise UserError(
            f"model.dim={cfg.model.dim} must be divisible by model.heads={cfg.model.heads}; change one of them"
        )

    if cfg.dataset.format in ("folder", "csv") and not cfg.dataset.root:
        what = "the class folders" if cfg.dataset.format == "folder" else "train.csv"
        raise UserError(f"dataset={cfg.dataset.name} reads your files: set dataset.root=<the folder holding {what}>")
    if OmegaConf.select(cfg, "dataset.classes") is not None and len(set(cfg.dataset.classes)) != len(
        cfg.dataset.classes
    ):
        raise UserError("dataset.classes names a class twice; give each class one name")

    if cfg.trainer.stop_at_target and cfg.trainer.target_accuracy is None:
        raise UserError("trainer.stop_at_target=true stops at trainer.target_accuracy: set it too, e.g. 0.99")

    if OmegaConf.select(cfg, "dataset.labels_per_class") and OmegaConf.select(cfg, "dataset.label_fraction"):
        raise UserError("set one of dataset.labels_per_class and dataset.label_fraction, not both")

    if cfg.objective.name != "supervised":
        if cfg.stage.name != "pretrain":
            raise UserError(
                f"objective={cfg.objective.name} is for `mnist pretrain`; {cfg.stage.name} learns from labels (drop objective=)"
            )
        if distributed.world_size() > 1:
            raise UserError(f"objective={cfg.objective.name} runs in one process; run it without torchrun")
    semi = cfg.semi_supervised.name
    if semi != "none" and cfg.objective.name != "supervised":
        raise UserError(
            f"semi_supervised={semi} learns from labels and unlabeled images, objective={cfg.objective.name} "
            f"from no labels; pretrain with one, then `mnist finetune ckpt=<run> semi_supervised={semi}`"
        )
    if semi != "none" and not (cfg.dataset.labels_per_class or cfg.dataset.label_fraction):
        raise UserError(
            f"semi_supervised={semi} learns from the training images without labels, and there are none: "
            "keep a few labels with dataset.labels_per_class=10 (or dataset.label_fraction=0.01)"
        )
    if cfg.objective.name == "mae":
        if cfg.model.name != "vit":
            raise UserError(
                f"objective=mae masks a ViT's patches; use model=vit or model=vit_mini (not {cfg.model.name})"
            )
        if cfg.objective.decoder_dim % cfg.objective.decoder_heads:
            raise UserError("objective.decoder_dim must be divisible by objective.decoder_heads; change one of them")

    world = distributed.world_size()
    if cfg.trainer.batch_size % world:
        raise UserError(
            f"trainer.batch_size={cfg.trainer.batch_size} must divide evenly among the {world} torchrun processes; "
            f"use a multiple of {world}"
        )

    stage = stages()[cfg.stage.name]
    if cfg.metric not in stage.metrics:
        raise UserError(
            f"metric={cfg.metric} is not something {stage.name} measures: use one of {', '.join(stage.metrics)}"
        )
    if stage.ckpt == "required" and cfg.ckpt is None and cfg.resume is None:
        raise UserError(
            f"{stage.name} needs a checkpoint: add ckpt=<run dir, .ckpt file or latest> "
            "(e.g. ckpt=outputs/pretrain/<run>)"
        )
    if stage.ckpt == "refused" and cfg.ckpt is not None:
        raise UserError(
            f"{stage.name} starts from scratch and takes no ckpt=; to train a checkpoint further use `mnist finetune ckpt=...`"
        )
    if not stage.resumable and cfg.resume is not None:
        raise UserError(f"{stage.name} takes no resume=; use `mnist {stage.name} ckpt=<run dir>`")
    if stage.name == "predict" and not cfg.input:
        raise UserError("predict needs images: add input=<image file, folder or glob> (e.g. input='digits/*.png')")
