"""The `mnist` command: the first word picks the stage, everything after it is Hydra's.

    mnist <stage> [key=value ...] [-m] [--cfg job] [--help] [--info]

`mnist --help` is answered from the config folder alone, without importing Hydra or torch.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from mnist_cli import __version__
from mnist_cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE

STAGES = {
    "pretrain": "train a fresh model",
    "finetune": "continue training a checkpoint (ckpt=...), on the same or another dataset",
    "eval": "measure a checkpoint (ckpt=...) on the test split",
}
GROUPS = ("dataset", "model", "optimizer", "scheduler", "trainer", "experiment")
EXAMPLES = """\
  mnist pretrain model=cnn
  mnist pretrain dataset.root=~/data/mnist trainer.epochs=4
  mnist finetune ckpt=outputs/pretrain/<run> finetune.freeze=backbone
  mnist finetune ckpt=latest dataset=fashion_mnist
  mnist eval ckpt=outputs/finetune/<run>
  mnist pretrain resume=outputs/pretrain/<run>
  mnist pretrain -m optimizer=adam,sgd optimizer.lr=1e-3,1e-2
  mnist pretrain --cfg job          # print the composed config and exit"""


def config_dir() -> Path:
    return Path(str(resources.files("mnist_cli.conf")))


def usage() -> str:
    conf = config_dir()
    width = max(map(len, STAGES))
    lines = [
        f"mnist {__version__}: pretrain, finetune and evaluate image classifiers on MNIST-style data.",
        "",
        "Usage: mnist <stage> [key=value ...] [-m] [--cfg job] [--help] [--info]",
        "",
        "Stages:",
        *(f"  {name:<{width}}  {text}" for name, text in STAGES.items()),
        "",
        "Config groups (choose with group=option; set any field with group.key=value):",
    ]
    for group in GROUPS:
        options = sorted(p.stem for p in (conf / group).glob("*.yaml"))
        lines.append(f"  {group:<10} {', '.join(options)}")
    lines += [
        "",
        "Examples:",
        EXAMPLES,
        "",
        "Runs are written to outputs/<stage>/<date>_<time>/ (sweeps: outputs/multirun/...).",
        "`mnist <stage> --help` shows every config value; `--cfg job` prints the composed config.",
    ]
    return "\n".join(lines)


# Hydra's flags that take a value; --info takes one only when it is one of INFO_TOPICS.
FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                    "--config-dir", "-cd", "--experimental-rerun"}
INFO_TOPICS = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


def hydra_argv(stage: str, args: list[str]) -> list[str]:
    """Hydra's arguments for `mnist <stage> ARGS`: its flags first (its parser does not take flags
    after overrides), then the stage, then the overrides in their order."""
    flags, overrides = [], []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            flags.append(arg)
            takes_value = arg in FLAGS_WITH_VALUE or (arg in ("--info", "-i") and i + 1 < len(args) and args[i + 1] in INFO_TOPICS)
            if takes_value and i + 1 < len(args):
                flags.append(args[i + 1])
                i += 1
        else:
            overrides.append(arg)
        i += 1
    return [*flags, f"stage={stage}", *overrides]


def compose_config(*overrides: str):
    """The config `mnist` composes for these overrides, without running anything (for tests,
    benchmarks and notebooks)."""
    from hydra import compose, initialize_config_module

    from mnist_cli.run_dir import register_resolvers

    register_resolvers()
    with initialize_config_module(config_module="mnist_cli.conf", version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def fail(message: str, code: int = EXIT_USAGE) -> None:
    print(f"mnist: error: {message}", file=sys.stderr)
    sys.exit(code)


def check_resume_arg(args: list[str]) -> None:
    """Refuse `resume=<dir>` before Hydra would create that directory."""
    for arg in args:
        if arg.startswith("resume=") and arg != "resume=null":
            path = Path(arg.removeprefix("resume=")).expanduser()
            if not (path / "checkpoints" / "last.ckpt").is_file():
                fail(
                    f"resume={path}: not a run directory with checkpoints/last.ckpt; "
                    "pass a directory under outputs/pretrain or outputs/finetune"
                )


def check_group_choices(args: list[str]) -> None:
    """Refuse `group=option` for an option that has no YAML file, naming the ones that exist.
    Sweep syntax (`a,b`) is checked value by value; Hydra's sweep functions and --config-dir
    (which may add options) are left to Hydra."""
    if any(arg in ("--config-dir", "-cd") or arg.startswith("--config-dir=") for arg in args):
        return
    conf = config_dir()
    for arg in args:
        group, sep, value = arg.lstrip("+~").partition("=")
        if not sep or group not in GROUPS or "(" in value:
            continue
        options = sorted(p.stem for p in (conf / group).glob("*.yaml"))
        for choice in value.split(","):
            if choice not in options:
                fail(f"unknown {group} '{choice}': choose one of {', '.join(options)} (see `mnist --help`)")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    if argv[0] == "--version":
        print(f"mnist {__version__}")
        return
    stage, args = argv[0], argv[1:]
    if stage not in STAGES:
        fail(f"unknown stage '{stage}': use one of {', '.join(STAGES)} (see `mnist --help`)")
    check_group_choices(args)
    check_resume_arg(args)

    import hydra

    from mnist_cli.run_dir import register_resolvers
    from mnist_cli.stages import failed_jobs, run_job

    register_resolvers()
    sys.argv = [sys.argv[0], *hydra_argv(stage, args)]
    try:
        hydra.main(version_base="1.3", config_path="pkg://mnist_cli.conf", config_name="config")(run_job)()
    except KeyboardInterrupt:
        fail("interrupted; the run keeps its last complete checkpoint: continue it with resume=<run dir>", EXIT_INTERRUPTED)
    if failed_jobs:
        fail(f"{len(failed_jobs)} job(s) failed: " + "; ".join(failed_jobs), EXIT_FAILED)


if __name__ == "__main__":
    main()
