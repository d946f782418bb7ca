"""The text of `mnist <stage> --help [GROUP|all]` and of docs/config.md, from conf/ alone (its files
read as text, no Hydra, no torch): a stage's own keys and the groups it reads, each key with its
value as written and its comment. `python -m mnist_cli.config.help` writes docs/config.md."""

from __future__ import annotations

import textwrap

from mnist_cli.config.comments import Key, Option, group_defaults, read_option, root
from mnist_cli.config.compose import options
from mnist_cli.config.stages import Stage, stages

WIDTH = 100
KEY_WIDTH = 34  # the column where a key's comment starts
HIDDEN = ("stage.", "_partial_")  # a stage's own description (--help shows it in words), Hydra's flags


def wrapped(text: str, indent: int) -> list[str]:
    return textwrap.wrap(text, WIDTH - indent) or [""]


def key_lines(key: str, documented: Key) -> list[str]:
    """`  key=value   comment`, the comment wrapped under itself; a long key=value on its own line."""
    value = documented.value if len(documented.value) <= 60 else documented.value[:56] + " ..."
    left = f"  {key}={value}"
    comment = documented.comment
    lines = wrapped(comment, KEY_WIDTH)
    if len(left) >= KEY_WIDTH - 1:
        return [left, *(" " * KEY_WIDTH + line for line in lines)] if comment else [left]
    return [left.ljust(KEY_WIDTH) + lines[0], *(" " * KEY_WIDTH + line for line in lines[1:])]


def keys_of(option: Option, prefix: str = "") -> list[str]:
    """Each key of `option` but blocks (their keys say it) and what --help does not show; keys that
    share a comment (mean, std) have it once, under the first."""
    lines, said = [], None
    for key, documented in option.keys.items():
        full = f"{prefix}{key}"
        if documented.value and not any(full.startswith(h) or full.endswith(h) for h in HIDDEN):
            comment = documented.comment or group_comment(full)
            lines += key_lines(full, Key(documented.value, "" if comment == said else comment))
            said = comment
    return lines


def group_comment(key: str) -> str:
    """The comment a key of a group has in that group's default option (for a preset's or a
    stage's value of it, e.g. finetune's trainer.epochs)."""
    group, _, rest = key.partition(".")
    if group not in group_defaults() or not rest:
        return ""
    found = read_option(group, group_defaults()[group][0]).keys.get(rest)
    return found.comment if found else ""


def root_keys(stage: Stage) -> list[str]:
    """The keys of conf/config.yaml that `stage` takes."""
    taken = {"ckpt": stage.ckpt != "refused", "resume": stage.resumable}
    return [
        line
        for key, documented in root().keys.items()
        if not key.startswith("hydra") and taken.get(key, True)
        for line in key_lines(key, documented)
    ]


def groups_lines(names: tuple[str, ...]) -> list[str]:
    lines = []
    for group in names:
        default, comment = group_defaults()[group]
        others = [o for o in options(group) if o != default]
        left = f"  {group}={default}"
        text = f"{comment}; also {', '.join(others)}" if others else comment
        lines += key_lines(f"{group}", Key(default, text)) if len(left) < KEY_WIDTH else [left, *wrapped(text, 4)]
    return lines


def stage_help(name: str) -> str:
    """`mnist <name> --help`."""
    stage = stages()[name]
    option = read_option("stage", name)
    ckpt = " ckpt=..." if stage.ckpt == "required" else ""
    first = next(g for g in stage.groups if len(options(g)) > 1)  # (for the example: a group with a choice)
    other = next(o for o in options(first) if o != group_defaults()[first][0])
    lines = [
        f"mnist {name}: {stage.help}",
        "",
        *option.header.splitlines(),
        "",
        f"Usage: mnist {name}{ckpt} [key=value ...] [-m] [--cfg job] [--help [GROUP|all]]",
        "",
        f"Keys of {name} (key=value):",
        *root_keys(stage),
        *keys_of(option),
        "",
        "Groups it reads (group=option picks an option; group.key=value sets one of its keys):",
        *groups_lines(stage.groups),
        "",
        *wrapped(
            f"`mnist {name} --help GROUP` lists a group's keys (e.g. --help {first}; `{first}={other} --help {first}` "
            "for another option's); `--help all` lists every group's.",
            0,
        ),
    ]
    return "\n".join(lines) + "\n"


def group_help(group: str, option: str) -> str:
    """The keys of conf/<group>/<option>.yaml: what `--help GROUP` prints."""
    documented = read_option(group, option)
    prefix = "" if documented.global_package else f"{group}."
    header = [f"{group}={option}:", *documented.header.splitlines()]
    return "\n".join([*header, "", *keys_of(documented, prefix)]) + "\n"


def help_text(name: str, args: list[str]) -> str:
    """`mnist <name> [args] --help [GROUP|all]`: the stage's help, or the keys of GROUP's option (the
    one `group=option` among `args` picks, else the default), or of every group the stage reads."""
    after = args[args.index(next(a for a in args if a in ("--help", "-h"))) + 1 :]
    topic = after[0] if after and not after[0].startswith("-") and "=" not in after[0] else None
    if topic is None:
        return stage_help(name)
    chosen = dict(a.split("=", 1) for a in args if "=" in a and a.split("=", 1)[0] in group_defaults())
    names = stages()[name].groups if topic == "all" else (topic,)
    if topic not in (*stages()[name].groups, "all"):
        raise KeyError(topic)
    texts = []
    for group in names:
        option = chosen.get(group, group_defaults()[group][0])
        texts += [group_help(group, o) for o in (options(group) if option == "null" else [option])]  # null: each
    return "\n".join(texts)


def reference() -> str:
    """docs/config.md: every stage's --help and every group option's keys."""
    out = [
        "# Configuration reference",
        "",
        "Generated from conf/ by `python -m mnist_cli.config.help > docs/config.md` (a test checks that it",
        "matches): each stage's `mnist <stage> --help`, then every option of every group with its keys,",
        "their values as written in conf/ and their comments.",
        "",
    ]
    for name in stages():
        out += [f"## mnist {name}", "", "```", stage_help(name).rstrip(), "```", ""]
    for group in group_defaults():
        if group == "stage":
            continue
        out += [f"## {group}", ""]
        for option in options(group):
            out += ["```", group_help(group, option).rstrip(), "```", ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(reference(), end="")
