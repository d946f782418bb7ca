"""The configs ship inside the package, so a non-editable install finds them."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).parents[1]


def test_every_config_folder_is_a_listed_package() -> None:
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    conf = REPO / "conf"
    folders = {
        ".".join(["mnist_cli.conf", *p.relative_to(conf).parts])
        for p in conf.glob("**/")
        if "__pycache__" not in p.parts
    }
    assert folders <= listed, f"add to pyproject.toml packages: {sorted(folders - listed)}"
