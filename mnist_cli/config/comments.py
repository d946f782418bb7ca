"""What conf/ says about each key: a group option's YAML file read as text, for its comments (which a
YAML parser drops). Each file is a header comment (up to the first blank line or key), then keys,
each with its comment: the comment lines just above it and the one after it on its line (continued
on the lines below, aligned under it). Keys written one after another under one comment above
them share it (mean, std), and a key inside a block without a comment of its own has the block's.
An option that starts from another (`defaults: [mnist, _self_]`) has that option's keys and
comments, with its own over them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

from mnist_cli.config.compose import config_dir

KEY = re.compile(r"^(\s*)([A-Za-z_][\w.-]*):(?:\s(.*)|$)")


@dataclass(frozen=True)
class Key:
    value: str  # as written in the file ("" for a block of keys)
    comment: str


@dataclass
class Option:
    """conf/<group>/<name>.yaml: its header comment, its keys (dotted, as the file states them:
    global paths in a `# @package _global_` file) and the options it starts from."""

    header: str  # its lines, as written (without the #)
    keys: dict[str, Key] = field(default_factory=dict)
    bases: list[str] = field(default_factory=list)  # its defaults list: options of the same group
    global_package: bool = False


def split_comment(text: str) -> tuple[str, str]:
    """A line's value and its trailing comment: the first # outside quotes that follows a space."""
    quote = None
    for i, char in enumerate(text):
        if char in "\"'" and quote in (None, char):
            quote = None if quote else char
        elif char == "#" and quote is None and (i == 0 or text[i - 1] == " "):
            return text[:i].strip(), text[i + 1 :].strip()
    return text.strip(), ""


def parse(text: str) -> Option:
    lines = text.splitlines()
    option = Option(header="", global_package=bool(lines) and lines[0].startswith("# @package _global_"))
    lines = lines[1:] if option.global_package else lines
    header = []
    while lines and lines[0].startswith("#"):
        header.append(lines.pop(0)[2:].rstrip())
    option.header = "\n".join(header)
    above: list[str] = []  # comment lines waiting for their key
    path: list[tuple[int, str]] = []  # (indent, key) of the enclosing blocks
    last: tuple[str, int] | None = None  # the key whose trailing comment a continuation line extends
    shared: tuple[int, str] | None = None  # (indent, comment) from above the previous key, for the next
    in_defaults = False
    for line in lines:
        stripped = line.strip()
        if not stripped:
            above, last, shared = [], None, None
            continue
        if stripped.startswith("#"):
            column = len(line) - len(line.lstrip())
            if last is not None and column == last[1]:  # continues the comment on the key's line
                key = last[0]
                option.keys[key] = Key(option.keys[key].value, f"{option.keys[key].comment} {stripped[1:].strip()}")
            else:
                above.append(stripped[1:].strip())
            continue
        if stripped.startswith("- "):
            if in_defaults and ":" not in stripped and stripped[2:].split("#")[0].strip() != "_self_":
                option.bases.append(stripped[2:].split("#")[0].strip())
            continue
        match = KEY.match(line)
        if not match:
            continue
        indent, name, rest = len(match[1]), match[2], match[3] or ""
        in_defaults = name == "defaults" and indent == 0
        if in_defaults:
            above = []
            continue
        while path and path[-1][0] >= indent:
            path.pop()
        dotted = ".".join([*(key for _, key in path), name])
        value, trailing = split_comment(rest)
        comment = " ".join([*above, trailing]).strip()
        if above:
            shared = (indent, " ".join(above))
        elif not comment and shared and shared[0] == indent:
            comment = shared[1]
        elif shared and shared[0] != indent:
            shared = None
        if not comment and path:  # a key inside a block: the block's comment
            comment = option.keys[".".join(key for _, key in path)].comment
        option.keys[dotted] = Key(value, comment)
        last = (dotted, line.index("#", len(line) - len(rest)) if trailing else -1)
        above = []
        if not value:
            path.append((indent, name))
    return option


@cache
def read_option(group: str, name: str) -> Option:
    """conf/<group>/<name>.yaml with what its bases give it (their keys and comments, its own over them)."""
    option = parse((config_dir() / group / f"{name}.yaml").read_text())
    keys: dict[str, Key] = {}
    for base in option.bases:
        keys.update(read_option(group, base).keys)
    for key, documented in option.keys.items():
        before = keys.get(key)
        keys[key] = Key(documented.value, documented.comment or (before.comment if before else ""))
    option.keys = keys
    return option


@cache
def root() -> Option:
    """conf/config.yaml: the keys every stage has (ckpt, resume, ...)."""
    return parse((config_dir() / "config.yaml").read_text())


@cache
def group_defaults() -> dict[str, tuple[str, str]]:
    """Each group of conf/config.yaml's defaults list: (its default option, its comment)."""
    found = {}
    for line in (config_dir() / "config.yaml").read_text().splitlines():
        if match := re.match(r"\s+- (\w+): (\w+)\s*(?:#\s*(.*))?$", line):
            found[match[1]] = (match[2], match[3] or "")
    return found
