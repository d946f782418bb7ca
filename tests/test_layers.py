"""The package's modules import one way: each layer only from the layers below it, so any of them
can be read, tested and used (in a notebook, a server) without the ones above. Every way one module
reaches another counts: `import mnist_cli.x`, `from mnist_cli.x import y`, `from mnist_cli import x`,
relative imports, and names in strings (import_module("mnist_cli.x"), a `_target_` in code or in
conf/, which Hydra imports for the code that builds that group)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import mnist_cli
from mnist_cli.config.compose import config_dir

# Top to bottom; a module may import from its own layer and the ones below.
LAYERS = [
    {"cli", "__main__"},  # the command line
    {"stages"},  # what each `mnist <stage>` does
    # the HTTP server, the labeling page, inference and export, picking and auditing images, checking configs
    {"serving", "labeling", "deploy", "selection", "audit", "config"},
    {
        "training",
        "objectives",
        "semi_supervised",
        "loggers",
        "evaluation",
        "report",
    },  # the loop, what it learns, measures
    {"data", "models"},  # images and networks
    {"run_dir", "targets", "errors", "conf", "__init__"},  # files of a run, building what configs name, errors
]
RANK = {part: i for i, layer in enumerate(LAYERS) for part in layer}
PACKAGE = Path(mnist_cli.__file__).parent
# The layer of the code that builds each group's `_target_` (Hydra imports it there).
BUILT_BY = {
    "dataset": "data",
    "model": "models",
    "optimizer": "training",
    "scheduler": "training",
    "objective": "objectives",
    "semi_supervised": "stages",
    "logger": "stages",
    "stage": "stages",
}
NAMED = re.compile(r"^(\w+)(\.\w+)*$")


def referenced(path: Path, module: str, package: str, package_dir: Path) -> list[str]:
    """The modules of `package` (at `package_dir`) that the file at `path`, the module `module`,
    imports or names."""
    found = []
    home = module if path.name == "__init__.py" else module.rpartition(".")[0]  # the package it is in
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from its own package (level 1) or `level - 1` packages above it
                parts = home.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            found.append(base)
            if base == package:  # from mnist_cli import x: a module of the package, or a name of its __init__
                found += [
                    f"{base}.{a.name}"
                    for a in node.names
                    if (package_dir / f"{a.name}.py").is_file() or (package_dir / a.name).is_dir()
                ]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and NAMED.match(node.value):
            found.append(node.value)  # import_module("..."), a _target_ in code
    return [name for name in found if name.startswith(f"{package}.")]


def part_of(module: str) -> str:
    """The layer name of `<package>.<part>...`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def upward_imports(package_dir: Path, package: str) -> list[str]:
    """Every reference from a module of the package to a layer above it, and modules in no layer."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        module = ".".join((package, *path.relative_to(package_dir).with_suffix("").parts))
        mine = part_of(module.removesuffix(".__init__"))
        if mine not in RANK:
            found.append(f"{path.relative_to(package_dir)}: its layer is not in LAYERS")
            continue
        found += [
            f"{path.relative_to(package_dir)} imports {name}"
            for name in referenced(path, module.removesuffix(".__init__"), package, package_dir)
            if RANK.get(part_of(name), -1) < RANK[mine]
        ]
    return found


def test_no_module_imports_from_a_layer_above_it() -> None:
    found = upward_imports(PACKAGE, "mnist_cli")
    assert len(list(PACKAGE.rglob("*.py"))) > 50 and not found, "\n".join(found)


def test_every_target_in_conf_is_below_the_code_that_builds_it() -> None:
    upward, targets = [], 0
    for path in config_dir().glob("*/*.yaml"):
        for target in re.findall(r"_target_: (mnist_cli\.\S+)", path.read_text()):
            targets += 1
            builder = BUILT_BY.get(path.parent.name) or BUILT_BY["stage"]
            if "reader" in path.read_text() and ".data." in target:
                builder = BUILT_BY["dataset"]
            if RANK[part_of(target)] < RANK[builder]:
                upward.append(f"{path.relative_to(config_dir())}: {target} is above {builder}")
    assert targets > 20 and not upward, "\n".join(upward)


def test_a_planted_upward_import_of_each_kind_is_caught(tmp_path: Path) -> None:
    """A package laid out like mnist_cli whose data layer reaches up to stages five ways."""
    package = tmp_path / "fake"
    for folder in ("stages", "data"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "stages" / "job.py").write_text("def run(): ...\n")
    (package / "data" / "ok.py").write_text("from fake.data import other\nfrom . import other\n")
    (package / "data" / "other.py").write_text("")
    planted = {
        "relative.py": "from ..stages import job\n",
        "relative_module.py": "from ..stages.job import run\n",
        "package.py": "from fake import stages\n",
        "by_name.py": "import importlib\nimportlib.import_module('fake.stages.job')\n",
        "target.py": "CONFIG = {'_target_': 'fake.stages.job.run'}\n",
    }
    for name, text in planted.items():
        (package / "data" / name).write_text(text)
    found = upward_imports(package, "fake")
    assert sorted(line.split(" ")[0] for line in found) == sorted(f"data/{name}" for name in planted), found


def test_no_module_is_over_300_lines() -> None:
    long = [
        f"{p.relative_to(PACKAGE)}: {n}" for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 300
    ]
    assert not long, long
