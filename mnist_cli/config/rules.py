"""What each config value may be: one rule per key, each stating its bound once and describing itself
in the error message. What a value means is its comment in conf/; how values of several keys must
fit together is config/validate.py."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

Rule = tuple[Callable[[Any], bool], str]  # (the check, what a good value looks like)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def whole(low: int = 0, high: int | None = None) -> Rule:
    """A whole number from `low` (to `high`)."""
    text = f"a whole number from {low} to {high}" if high is not None else f"a whole number >= {low}"
    return (lambda v: is_int(v) and v >= low and (high is None or v <= high)), text


def number(bounds: str) -> Rule:
    """A number within `bounds`: "> 0", ">= 0", or an interval such as "[0, 1)" or "(0, 1]"."""
    if match := re.fullmatch(r"(>=?) (\S+)", bounds):
        low, closed = float(match[2]), match[1] == ">="
        return (lambda v: is_num(v) and (v >= low if closed else v > low)), f"a number {bounds}"
    match = re.fullmatch(r"([\[(])(\S+), (\S+)([\])])", bounds)
    assert match, bounds
    low, high = float(match[2]), float(match[3])

    def inside(v: Any) -> bool:
        above = v >= low if match[1] == "[" else v > low
        below = v <= high if match[4] == "]" else v < high
        return is_num(v) and above and below

    return inside, f"a number in {bounds}"


def shown(value: Any) -> str:
    return {True: "true", False: "false", None: "null"}.get(value, str(value)) if not is_num(value) else str(value)


def choice(*values: Any) -> Rule:
    """One of `values`."""
    names = [shown(v) for v in values]
    return (lambda v: any(v == c and type(v) is type(c) for c in values)), ", ".join(names[:-1]) + f" or {names[-1]}"


def optional(rule: Rule) -> Rule:
    """null, or what `rule` allows."""
    check, text = rule
    return (lambda v: v is None or check(v)), f"null or {text}"


FLAG = choice(True, False)
INTEGER: Rule = (is_int, "an integer")
POSITIVE = number("> 0")
NON_NEGATIVE = number(">= 0")
FRACTION = number("[0, 1)")
PROBABILITY = number("[0, 1]")
SHARE = number("(0, 1]")


def attacks(v: Any) -> bool:
    names = [v] if isinstance(v, str) or v is None else list(v) if isinstance(v, Sequence) else [0]
    return all(name in (None, "fgsm", "pgd") for name in names)


def views_rules(prefix: str) -> dict[str, Rule]:
    """The rules of a block of random views' strengths (data/views.py)."""
    return {
        f"{prefix}.crop_min_area": SHARE,
        f"{prefix}.max_rotate": NON_NEGATIVE,
        f"{prefix}.blur_prob": PROBABILITY,
        f"{prefix}.blur_sigma": POSITIVE,
        f"{prefix}.erase_prob": PROBABILITY,
        f"{prefix}.erase_min": SHARE,
        f"{prefix}.erase_max": SHARE,
        f"{prefix}.elastic_alpha": NON_NEGATIVE,
        f"{prefix}.elastic_sigma": POSITIVE,
    }


# key -> rule, checked in this order (a key that the chosen option of its group lacks is skipped)
RULES: dict[str, Rule] = {
    # first: optimizer.lr of a finetune is finetune.lr.<strategy>
    "finetune.strategy": choice("full", "linear", "partial", "lora"),
    "finetune.classes": choice("auto", "keep", "grow", "replace"),
    "finetune.replay.size": whole(0),
    "finetune.replay.share": number("(0, 1)"),
    "finetune.replay.seed": whole(0),
    "finetune.max_forgetting": optional(NON_NEGATIVE),
    "dataset.val_size": (
        lambda v: whole(1)[0](v) or (is_num(v) and 0 < v < 1),
        "a fraction between 0 and 1 (e.g. 0.05) or a count >= 1",
    ),
    "dataset.test_size": number("(0, 1)"),
    "dataset.split_seed": INTEGER,
    "dataset.on_bad_file": choice("skip", "fail"),
    "dataset.workers": optional(whole(1)),
    "dataset.first_label": whole(0),
    "dataset.mean": optional((is_num, "a number")),
    "dataset.std": optional(POSITIVE),
    "dataset.augment.max_shift": NON_NEGATIVE,
    "dataset.augment.max_rotate": NON_NEGATIVE,
    "dataset.augment.max_scale": FRACTION,
    "dataset.augment.hflip": FLAG,
    "dataset.augment.elastic_alpha": NON_NEGATIVE,
    "dataset.augment.elastic_sigma": POSITIVE,
    "dataset.labels_per_class": optional(whole(1)),
    "dataset.label_fraction": optional(number("(0, 1]")),
    "dataset.labeled": optional((lambda v: isinstance(v, str), "a path to a CSV file")),
    "model.channels": (
        lambda v: isinstance(v, Sequence) and len(v) > 0 and all(map(whole(1)[0], v)),
        "a list of widths >= 1, e.g. [16,32,64]",
    ),
    "model.convs": whole(1),
    "model.kernel_size": (
        lambda v: (
            all(is_int(k) and k >= 1 and k % 2 for k in (v if isinstance(v, Sequence) else [v]))
            and (not isinstance(v, Sequence) or len(v) > 0)
        ),
        "an odd size (e.g. 3), or one a stage (e.g. [5,3])",
    ),
    "model.padding": choice("same", "valid"),
    "model.batch_norm": FLAG,
    "model.hidden": whole(0),
    "model.head_dropout": FRACTION,
    "model.dropout": FRACTION,
    "model.stem": choice("small", "strided"),
    "model.patch": (lambda v: whole(1)[0](v) and 28 % v == 0, "a patch size that divides 28: 4 or 7 (or 1, 2, 14)"),
    "model.dim": whole(1),
    "model.depth": whole(1),
    "model.heads": whole(1),
    "model.mlp_ratio": POSITIVE,
    "model.pool": choice("cls", "mean"),
    "optimizer.lr": POSITIVE,
    "optimizer.weight_decay": NON_NEGATIVE,
    "optimizer.momentum": FRACTION,
    "optimizer.rho": FRACTION,
    "scheduler.warmup_epochs": NON_NEGATIVE,
    "scheduler.step_epochs": POSITIVE,
    "scheduler.gamma": POSITIVE,
    "scheduler.min_lr_ratio": PROBABILITY,
    "scheduler.pct_start": number("(0, 1)"),
    "scheduler.div_factor": POSITIVE,
    "scheduler.final_div_factor": POSITIVE,
    "trainer.epochs": whole(1),
    "trainer.min_steps": whole(0),
    "trainer.warn_under_steps": whole(0),
    "trainer.max_steps": optional(whole(1)),
    "trainer.batch_size": whole(1),
    "trainer.accumulate_steps": whole(1),
    "trainer.eval_batch_size": whole(1),
    "trainer.device": (
        lambda v: isinstance(v, str) and re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v) is not None,
        "auto, cpu, cuda, cuda:<n> or mps",
    ),
    "trainer.precision": choice("auto", "fp32", "bf16", "fp16"),
    "trainer.compile": FLAG,
    "trainer.target_accuracy": optional(number("(0, 1]")),
    "trainer.stop_at_target": FLAG,
    "trainer.check_every_steps": whole(0),
    "trainer.label_smoothing": FRACTION,
    "trainer.grad_clip": optional(POSITIVE),
    "trainer.seed": INTEGER,
    "trainer.adversarial": choice(None, "fgsm", "pgd"),
    "trainer.adversarial_eps": SHARE,
    "trainer.adversarial_steps": whole(1),
    "trainer.adversarial_step_size": optional(POSITIVE),
    "trainer.adversarial_random_start": FLAG,
    "trainer.deterministic": FLAG,
    "trainer.checkpoint_every_steps": whole(0),
    "trainer.select": choice("val_acc", "val_loss", "last"),
    "trainer.ema": FLAG,
    "trainer.ema_decay": number("(0, 1)"),
    "trainer.early_stopping_patience": whole(0),
    "trainer.log_every_steps": whole(1),
    "trainer.num_threads": optional(whole(1)),
    "objective.mask_ratio": number("(0, 1)"),
    "objective.decoder_dim": whole(1),
    "objective.decoder_depth": whole(1),
    "objective.decoder_heads": whole(1),
    "objective.temperature": POSITIVE,
    "objective.projection_hidden": whole(1),
    "objective.projection_dim": whole(1),
    "objective.knn_k": whole(1),
    "objective.knn_temperature": POSITIVE,
    **views_rules("objective.views"),
    "semi_supervised.ratio": whole(1),
    "semi_supervised.threshold": PROBABILITY,
    "semi_supervised.weight": NON_NEGATIVE,
    "semi_supervised.teacher": choice("model", "average"),
    "semi_supervised.thresholds": choice("fixed", "flexible"),
    "semi_supervised.alignment": FLAG,
    "semi_supervised.alignment_momentum": number("[0, 1)"),
    "semi_supervised.drift_warning": POSITIVE,
    "semi_supervised.association": NON_NEGATIVE,
    "semi_supervised.visit": NON_NEGATIVE,
    **views_rules("semi_supervised.strong"),
    "distill.alpha": PROBABILITY,
    "distill.temperature": POSITIVE,
    "finetune.lora_rank": whole(1),
    "finetune.lora_alpha": POSITIVE,
    "finetune.unfreeze_blocks": whole(1),
    "finetune.layer_decay": SHARE,
    "logger.mode": choice("auto", "online", "offline"),
    "calibrate": FLAG,
    "format": choice("onnx", "torchscript", "int8"),
    "prune": FRACTION,
    "export.check_images": optional(whole(1)),
    "export.tolerance": POSITIVE,
    "export.max_accuracy_drop": PROBABILITY,
    "export.opset": whole(18),
    "preprocess.mode": choice("mnist_like", "resize"),
    "preprocess.invert": choice("auto", True, False),
    "preprocess.threshold": FRACTION,
    "preprocess.digit_size": whole(1, 28),
    "explain.method": choice("integrated_gradients", "saliency", "occlusion", "gradcam"),
    "explain.pick": choice("wrong", "first"),
    "explain.images": whole(1),
    "explain.show": whole(1),
    "explain.ig_steps": whole(1),
    "explain.occlusion_window": whole(1, 28),
    "explain.occlusion_stride": whole(1),
    "explain.batch_size": whole(1),
    "predict.top_k": whole(1),
    "predict.show": whole(1),
    "eval.top_k": whole(1),
    "eval.calibration_bins": whole(1),
    "eval.worst_images": whole(0),
    "eval.embedding": choice("pca", "tsne", "umap", "none"),
    "eval.tta": FLAG,
    "eval.tta_shift": whole(1),
    "eval.attack": (attacks, "null, fgsm, pgd or a list of them, e.g. [fgsm,pgd]"),
    "eval.eps": (
        lambda v: isinstance(v, Sequence) and len(v) > 0 and all(SHARE[0](e) for e in v),
        "a list of strengths in (0, 1], e.g. [0.1,0.3]",
    ),
    "eval.pgd_steps": whole(1),
    "eval.pgd_step_size": optional(POSITIVE),
    "eval.pgd_random_start": FLAG,
    "eval.pgd_seed": INTEGER,
    "eval.attack_images": optional(whole(1)),
    "eval.corruptions": FLAG,
    "eval.corruption.seed": INTEGER,
    "eval.corruption.noise_std": NON_NEGATIVE,
    "eval.corruption.blur_sigma": POSITIVE,
    "eval.corruption.shift_pixels": NON_NEGATIVE,
    "eval.corruption.rotate_degrees": NON_NEGATIVE,
    "eval.corruption.contrast": PROBABILITY,
    "serve.host": (lambda v: isinstance(v, str) and v != "", "an address such as 127.0.0.1 (0.0.0.0: every interface)"),
    "serve.port": whole(0, 65535),
    "serve.token": optional((lambda v: isinstance(v, (str, int)) and str(v) != "", "a token string")),
    "serve.max_batch": whole(1),
    "serve.max_wait_ms": NON_NEGATIVE,
    "serve.max_queue": whole(1),
    "serve.threads": whole(1),
    "serve.max_bytes": whole(1),
    "serve.feedback": optional((lambda v: isinstance(v, str) and v != "", "a folder")),
    "serve.max_images": whole(1),
    "serve.max_pixels": whole(1),
    "serve.shutdown_timeout_s": POSITIVE,
    "select.budget": whole(1),
    "select.strategy": choice("auto", "random", "least_confidence", "margin", "entropy", "bald", "k_center", "typical"),
    "select.mc_passes": whole(2),
    "select.pca_dims": whole(1),
    "select.neighbours": whole(1),
    "select.seed": INTEGER,
    "select.show": whole(1),
    "label.host": (lambda v: isinstance(v, str) and v != "", "an address such as 127.0.0.1"),
    "label.port": whole(0, 65535),
    "audit.split": choice("test", "train", "all"),
    "audit.folds": whole(2),
    "audit.seed": INTEGER,
    "audit.rank_by": choice("self_confidence", "normalized_margin", "confidence_weighted_entropy"),
    "audit.top": whole(0),
    "audit.show": whole(1),
}
