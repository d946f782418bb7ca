"""Every example command in `mnist --help`, `mnist <stage> --help`, README.md and docs/ composes and
validates as `mnist ... --cfg job` would (config/checks.py), so none meets a new user as an error.
Placeholders (<run>, ...) stand for a path the user has; resume= gets a run directory."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from mnist_cli.cli import usage
from mnist_cli.config.arguments import read_command_line
from mnist_cli.config.checks import check_config
from mnist_cli.config.help import stage_help
from mnist_cli.config.stages import stages

ROOT = Path(__file__).parents[1]
COMMAND = re.compile(r"(?:^|\s)(?:mnist|-m mnist_cli) (" + "|".join(stages()) + r")\b(.*)$")


def commands_in(text: str) -> list[str]:
    """The `mnist <stage> ...` commands of a text: in code blocks and indented examples, whole lines
    (continued with a backslash); in prose, `inline code` that sets something."""
    found = []
    text = text.replace("\\\n", " ")
    for block in re.findall(r"```\n(.*?)```", text, flags=re.S) + ["\n".join(re.findall(r"^  +\S.*$", text, re.M))]:
        found += [line.strip() for line in block.splitlines() if COMMAND.search(line)]
    spans = re.findall(r"`(mnist [^`]+)`", text)
    found += [span for span in spans if "=" in span and " ... " not in f"{span} " and COMMAND.search(span)]
    return found


def examples() -> list[tuple[str, str]]:
    """(where, command) of every example."""
    sources = {"mnist --help": usage(), **{f"mnist {s} --help": stage_help(s) for s in stages()}}
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    sources |= {str(p.relative_to(ROOT)): p.read_text() for p in docs if p.name != "config.md"}  # (the helps again)
    seen, found = set(), []
    for where, text in sources.items():
        for command in commands_in(text):
            if command not in seen and "$(" not in command:
                seen.add(command)
                found.append((where, command))
    return found


def arguments(command: str, run: Path) -> tuple[str, list[str]]:
    """The stage and its arguments, with the placeholders filled in."""
    stage, rest = COMMAND.search(command).groups()
    words = shlex.split(os.path.expandvars(re.sub(r"<[^>]*>", "x", rest)), comments=True)
    filled = []
    for word in words:
        if word == "...":
            continue
        key, sep, value = word.partition("=")
        word = f"resume={run}" if key == "resume" else key + sep + value.replace("...", "x")
        filled.append(word)
    return stage, filled


EXAMPLES = examples()


def test_there_are_examples_everywhere() -> None:
    places = {where for where, _ in EXAMPLES}
    assert len(EXAMPLES) > 60 and {"README.md", "mnist --help", "mnist pretrain --help"} <= places


@pytest.mark.parametrize(("where", "command"), EXAMPLES, ids=[f"{w}: {c[:60]}" for w, c in EXAMPLES])
def test_every_example_composes_and_validates(
    where: str, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "outputs" / "pretrain" / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    (tmp_path / "my_conf" / "model").mkdir(parents=True)  # the README's own option
    (tmp_path / "my_conf" / "model" / "mycnn.yaml").write_text("defaults: [cnn, _self_]\nchannels: [32, 64, 96]\n")
    monkeypatch.chdir(tmp_path)
    stage, args = arguments(command, run)
    check_config(read_command_line(stage, args))
