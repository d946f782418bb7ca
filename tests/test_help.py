"""What the command line says about the configs: `mnist <stage> --help [GROUP|all]`, every key of
conf/ with a comment, and docs/config.md generated from the same text."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnist_cli.config.comments import group_defaults, read_option
from mnist_cli.config.compose import config_dir, options
from mnist_cli.config.help import group_comment, help_text, reference
from mnist_cli.config.stages import stages

from conftest import mnist

DOCS = Path(__file__).parents[1] / "docs" / "config.md"


@pytest.mark.parametrize("stage", list(stages()))
def test_a_stages_help_gives_its_own_keys_with_their_comments_and_the_groups_it_reads(stage: str) -> None:
    text = help_text(stage, ["--help"])
    own = read_option("stage", stage).keys
    for key, documented in own.items():
        if documented.value and not key.startswith("stage."):
            line = next(line for line in text.splitlines() if line.startswith(f"  {key}="))
            assert documented.value[:20] in line, (key, line)
    groups = text.split("Groups it reads")[1].split("\n\n")[0]
    listed = [line.split("=")[0].strip() for line in groups.splitlines()[1:] if line.startswith("  ") and "=" in line]
    assert listed == list(stages()[stage].groups) and "stage" not in listed  # the first word picks the stage
    assert all(len(line) <= 100 for line in text.splitlines()), max(text.splitlines(), key=len)


def test_a_groups_help_lists_the_chosen_options_keys(tmp_path: Path) -> None:
    vit = mnist("pretrain", "model=vit", "--help", "model", cwd=tmp_path)
    assert vit.returncode == 0 and "model.patch=4" in vit.stdout and "model.channels" not in vit.stdout
    assert "patch size in pixels" in vit.stdout  # its comment in conf/model/vit.yaml
    every = help_text("eval", ["--help", "all"])
    assert "dataset.val_size=0.05" in every and "trainer.eval_batch_size=256" in every and "model." not in every
    wrong = mnist("eval", "--help", "model", cwd=tmp_path)  # eval takes the checkpoint's model
    assert wrong.returncode == 2 and "--help model: not a config group; use one of dataset" in wrong.stderr


def test_every_key_in_conf_has_a_comment() -> None:
    """Each option file says what it is (its header) and what each of its keys means: its own
    comment, the option it starts from's, or (a preset's or stage's value of another group's key)
    that group's."""
    missing = []
    for group in [*group_defaults(), "hparams_search", "launcher"]:
        for option in options(group):
            documented = read_option(group, option)
            missing += [f"{group}/{option}.yaml: the header"] if not documented.header else []
            prefix = "" if documented.global_package else f"{group}."
            missing += [
                f"{group}/{option}.yaml: {key}"
                for key, entry in documented.keys.items()
                if entry.value and not entry.comment and not group_comment(prefix + key)
            ]
    assert not missing, "\n".join(missing)


def test_docs_config_md_is_the_generated_reference() -> None:
    assert DOCS.read_text() == reference(), "run: python -m mnist_cli.config.help > docs/config.md"
    for name in stages():
        assert help_text(name, ["--help"]).rstrip() in DOCS.read_text()
    assert str(config_dir() / "model" / "cnn.yaml") and "model=cnn:" in DOCS.read_text()
