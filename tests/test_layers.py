"""The package's modules import one way: each layer only from the layers below it, so any of them
can be read, tested and used (in a notebook, a server) without the ones above."""

from __future__ import annotations

import ast
from pathlib import Path

import mnist_cli

# Top to bottom; a module may import from its own layer and the ones below.
LAYERS = [
    {"cli", "__main__"},  # the command line
    {"stages"},  # what each `mnist <stage>` does
    {"serving", "deploy", "config"},  # the HTTP server, inference and export, checking configs
    {"training", "evaluation", "report"},  # the loop and its tasks, measures, tables and plots
    {"data", "models"},  # images and networks
    {"run_dir", "targets", "errors", "conf", "__init__"},  # files of a run, classes named in configs, errors
]
RANK = {part: i for i, layer in enumerate(LAYERS) for part in layer}
PACKAGE = Path(mnist_cli.__file__).parent


def part_of(module: str) -> str:
    """The layer name of `mnist_cli.<part>...`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [name for name in found if name.startswith("mnist_cli.")]


def test_no_module_imports_from_a_layer_above_it() -> None:
    upward = []
    modules = sorted(PACKAGE.rglob("*.py"))
    for path in modules:
        mine = part_of(".".join(("mnist_cli", *path.relative_to(PACKAGE).with_suffix("").parts)))
        assert mine in RANK, f"{path}: its layer is not in LAYERS"
        upward += [
            f"{path.relative_to(PACKAGE)} imports {name}" for name in imports(path) if RANK[part_of(name)] < RANK[mine]
        ]
    assert len(modules) > 50 and not upward, "\n".join(upward)
