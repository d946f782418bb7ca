"""Config composition, validation and the command line's own parsing (no training here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from mnist_cli.cli import usage
from mnist_cli.config.arguments import read_command_line
from mnist_cli.config.checks import check_group_choices
from mnist_cli.config.compose import compose_config, config_dir, groups, options
from mnist_cli.config.rules import RULES, choice, number, optional, whole
from mnist_cli.config.stages import stages
from mnist_cli.config.validate import validate
from mnist_cli.errors import UserError
from mnist_cli.models import build_model
from mnist_cli.run_dir import RunDir, unique_dir

GROUP_OPTIONS = [
    (group, path.stem) for group in (*groups(), "stage") for path in sorted((config_dir() / group).glob("*.yaml"))
]


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_every_group_option_composes_and_validates(group: str, option: str) -> None:
    extra = ["ckpt=x.ckpt"] if group == "stage" and stages()[option].ckpt == "required" else []
    extra += ["input=x.png"] if option == "predict" else []
    extra += ["dir=to_label"] if option == "label" else []
    extra += ["model=vit_mini"] if group == "objective" and option == "mae" else []
    extra += ["dataset.labels_per_class=10"] if group == "semi_supervised" and option != "none" else []
    extra += ["dataset.root=x"] if group == "dataset" and option in ("folder", "csv") else []
    cfg = compose_config(f"{group}={option}", *extra)
    validate(cfg)
    if group == "dataset":
        assert cfg.dataset.name == option
    nodes = [OmegaConf.select(cfg, group), cfg.dataset.reader, cfg.stage.run]
    targets = [node._target_ for node in nodes if isinstance(node, DictConfig) and "_target_" in node]
    assert all(callable(get_method(target)) for target in targets)  # what each option names can be built
    if group == "model":  # the function that builds it, with the group's other keys as its arguments
        assert build_model(cfg.model, 10).backbone.feature_dim > 0
    if group == "stage":
        assert cfg.stage.name == option


def test_every_config_file_has_comments() -> None:
    for path in config_dir().glob("**/*.yaml"):
        assert "#" in path.read_text(), f"{path} explains nothing"


def test_fashion_mnist_inherits_mnist_fields() -> None:
    cfg = compose_config("dataset=fashion_mnist")
    assert cfg.dataset.torchvision_name == "FashionMNIST"
    assert cfg.dataset.val_size == 0.05 and cfg.dataset.augment.max_rotate == 0
    assert len(cfg.dataset.classes) == 10


def test_experiment_presets_override_the_groups() -> None:
    cfg = compose_config("experiment=cnn_large_batch")
    assert cfg.trainer.batch_size == 512 and cfg.optimizer.lr == 2e-2 and cfg.trainer.seed == 0


@pytest.mark.parametrize(
    "overrides",
    [
        ["experiment=cnn_record"],
        ["experiment=fashion"],
        ["experiment=cnn_large_batch"],
        ["experiment=cnn_contrastive"],
        ["semi_supervised=fixmatch"],
        ["stage=finetune"],
    ],
)
def test_recipes_tuned_with_light_weight_decay_keep_it_under_the_defaults(overrides: list[str]) -> None:
    assert compose_config().optimizer.weight_decay == 0.2  # the default CNN's
    assert compose_config(*overrides).optimizer.weight_decay == 5e-4
    assert compose_config(*overrides, "optimizer.weight_decay=0.01").optimizer.weight_decay == 0.01


def test_finetune_stage_lowers_the_learning_rate() -> None:
    assert compose_config("stage=finetune").optimizer.lr < compose_config("stage=pretrain").optimizer.lr


def test_data_root_follows_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_CLI_DATA", "/data/here")
    assert compose_config().dataset.root == "/data/here"
    monkeypatch.delenv("MNIST_CLI_DATA")
    assert compose_config().dataset.root == "~/.cache/mnist-cli"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=-1", "optimizer.lr=-1 is not valid"),
        ("trainer.batch_size=0", "trainer.batch_size=0 is not valid"),
        ("dataset.val_size=2.0", "dataset.val_size=2.0 is not valid"),
        ("trainer.precision=fp8", "fp32, bf16 or fp16"),
        ("trainer.device=gpu", "auto, cpu, cuda"),
        ("trainer.epochs=1.5", "trainer.epochs=1.5 is not valid"),
        ("ckpt=some.ckpt", "pretrain starts from scratch"),
    ],
)
def test_bad_values_are_refused_with_the_key_to_fix(override: str, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(".", r"\.")):
        validate(compose_config(override))


@pytest.mark.parametrize(
    ("rule", "good", "bad", "said"),
    [
        (whole(1), [1, 7], [0, 1.5, True, "2"], "a whole number >= 1"),
        (whole(1, 28), [1, 28], [0, 29], "a whole number from 1 to 28"),
        (number("> 0"), [1e-9, 3], [0, -1, False], "a number > 0"),
        (number("[0, 1)"), [0, 0.5], [1, -0.1], "a number in [0, 1)"),
        (number("(0, 1]"), [1, 0.5], [0, 1.5], "a number in (0, 1]"),
        (choice("auto", True, False), ["auto", True, False], ["yes", 1, None], "auto, true or false"),
        (optional(whole(1)), [None, 3], [0], "null or a whole number >= 1"),
    ],
)
def test_a_rule_checks_what_it_says(rule: tuple, good: list, bad: list, said: str) -> None:
    check, text = rule
    assert text == said and all(map(check, good)) and not any(map(check, bad))


def test_every_rule_names_a_key_that_some_config_option_has() -> None:
    """The rules follow conf/: a renamed or removed key leaves no rule checking nothing."""
    composed = [compose_config(f"stage={name}") for name in stages()]
    composed += [compose_config(f"{group}={option}") for group in groups() for option in options(group)]
    missing = [
        key for key in RULES if all(OmegaConf.select(c, key, default="<absent>") == "<absent>" for c in composed)
    ]
    assert not missing, missing


def test_finetune_without_a_checkpoint_is_refused() -> None:
    with pytest.raises(UserError, match="finetune needs a checkpoint"):
        validate(compose_config("stage=finetune"))


def test_hydra_flags_move_before_the_overrides() -> None:
    args = ["a=1", "-m", "b=2,3", "--info", "c=~/data", "--config-dir", "."]
    assert read_command_line("pretrain", args).hydra_argv() == [
        "-m",
        "--info",
        "all",  # --info's topic, so that Hydra does not read stage=pretrain as one
        "--config-dir",
        ".",
        "stage=pretrain",
        "a=1",
        "b=2,3",
        f"c={Path.home()}/data",  # ~ expanded, as a shell expands it in VAR=~/data
    ]


def test_unknown_group_option_names_the_choices() -> None:
    with pytest.raises(UserError, match="unknown model 'vgg': choose one of cnn"):
        check_group_choices(read_command_line("pretrain", ["model=vgg"]))
    check_group_choices(
        read_command_line("pretrain", ["optimizer=adam,sgd", "trainer.epochs=3"])
    )  # a sweep of real options passes


def test_help_lists_stages_groups_and_options_without_importing_torch() -> None:
    text = usage()
    for word in ("pretrain", "finetune", "eval", "dataset", "fashion_mnist", "onecycle", "adamw", "Examples"):
        assert word in text
    code = "import sys; from mnist_cli.cli import main; main(['--help']); assert 'torch' not in sys.modules and 'hydra' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_unique_dir_never_shares_a_directory(tmp_path: Path) -> None:
    base = str(tmp_path / "outputs" / "pretrain" / "2026-01-01_00-00-00")
    first = unique_dir(base)
    second = unique_dir(base)  # another run starting in the same second
    assert second == base + "_1" and Path(first).is_dir() and Path(second).is_dir()


def test_run_config_is_saved_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_CLI_DATA", "/data/here")
    RunDir(tmp_path).write_config(compose_config())
    saved = OmegaConf.load(tmp_path / "config.yaml")
    assert saved.dataset.root == "/data/here" and "${" not in (tmp_path / "config.yaml").read_text()
