"""Check a composed config before any heavy import: each value against its rule (config/rules.py),
then how the values of several keys fit together; each problem is one line saying how to fix it."""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf

from mnist_cli.config.comments import read_option
from mnist_cli.config.compose import options
from mnist_cli.config.rules import RULES
from mnist_cli.errors import UserError
from mnist_cli.training import distributed


def validate(cfg: DictConfig) -> None:
    """Raise UserError naming the first bad value, what it should be, and the key to set."""
    for key in sorted(OmegaConf.missing_keys(cfg)):  # ??? in conf/: a value only the person running it knows
        group, _, rest = key.partition(".")
        option = OmegaConf.select(cfg, f"{group}.name")
        documented = read_option(group, option).keys.get(rest) if option in options(group) else None
        what = documented.comment.split(" (")[0] if documented else "its value"
        raise UserError(f"{key} is not set: give {what}, {key}=... (`mnist {cfg.stage.name} --help {group}`)")
    for key, (rule, want) in RULES.items():
        if OmegaConf.select(cfg, key, default="<absent>") == "<absent>":
            continue  # this option of the group has no such field
        value = OmegaConf.select(cfg, key)
        if not rule(value):
            raise UserError(f"{key}={value!r} is not valid: it must be {want}; fix it with {key}=...")
    for group, example in (
        ("model", "cnn"),
        ("optimizer", "adamw"),
        ("scheduler", "onecycle"),
        ("objective", "supervised"),
    ):
        if not OmegaConf.select(cfg, f"{group}._target_"):  # an option of one's own (--config-dir) without one
            raise UserError(
                f"{group}._target_ is not set: name the class that builds it, or start your {group} option's "
                f"file with `defaults: [{example}, _self_]` to take a shipped one's and state only what differs"
            )
    if "heads" in cfg.model and cfg.model.dim % cfg.model.heads:
        raise UserError(
            f"model.dim={cfg.model.dim} must be divisible by model.heads={cfg.model.heads}; change one of them"
        )

    kernels = OmegaConf.select(cfg, "model.kernel_size")
    if isinstance(kernels, Sequence) and len(kernels) != len(cfg.model.channels):
        raise UserError(
            f"model.kernel_size={list(kernels)} gives {len(kernels)} sizes for {len(cfg.model.channels)} stages "
            f"(model.channels={list(cfg.model.channels)}): give one a stage, or one number for all"
        )
    if OmegaConf.select(cfg, "model.padding") == "valid":
        sizes = list(kernels) if isinstance(kernels, Sequence) else [kernels] * len(cfg.model.channels)
        side = 28
        for kernel in sizes:
            side = (side - cfg.model.convs * (kernel - 1)) // 2
        if side < 1:
            raise UserError(
                f"model.padding=valid: the images shrink to nothing before the last stage of model.channels="
                f"{list(cfg.model.channels)} (kernels {sizes}); use fewer stages, smaller kernels or model.padding=same"
            )

    if OmegaConf.select(cfg, "dataset.classes") is not None and len(set(cfg.dataset.classes)) != len(
        cfg.dataset.classes
    ):
        raise UserError("dataset.classes names a class twice; give each class one name")

    if cfg.trainer.stop_at_target and cfg.trainer.target_accuracy is None:
        raise UserError("trainer.stop_at_target=true stops at trainer.target_accuracy: set it too, e.g. 0.99")

    limits = [k for k in ("labels_per_class", "label_fraction", "labeled") if OmegaConf.select(cfg, f"dataset.{k}")]
    if len(limits) > 1:
        raise UserError(f"set only one of {', '.join('dataset.' + k for k in limits)}: each chooses the labeled images")

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
    if semi != "none" and not limits:
        raise UserError(
            f"semi_supervised={semi} learns from the training images without labels, and there are none: "
            "keep a few labels with dataset.labels_per_class=10 (or dataset.label_fraction=0.01)"
        )
    if semi != "none" and cfg.semi_supervised.teacher == "average" and not cfg.trainer.ema:
        raise UserError(
            "semi_supervised.teacher=average takes the pseudo-labels from the moving average of the weights, "
            "and none is kept: add trainer.ema=true (or semi_supervised.teacher=model)"
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

    stage = cfg.stage
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
    if stage.name == "label" and not cfg.dir:
        raise UserError("label needs a folder of images: add dir=<folder> (e.g. dir=outputs/select/<run>/to_label)")
