"""The `mnist` command: the first word picks the stage, everything after it is Hydra's.

    mnist <stage> [key=value ...] [-m] [--cfg job] [--help] [--info]

`mnist --help` is answered from the config folder alone, without importing Hydra or torch.
"""

from __future__ import annotations

import gc
import sys
import tempfile

from mnist_cli import __version__
from mnist_cli.config.arguments import CommandLine, read_command_line
from mnist_cli.config.checks import check_config
from mnist_cli.config.compose import groups, options
from mnist_cli.config.stages import stages
from mnist_cli.errors import EXIT_INTERRUPTED, EXIT_USAGE, UserError, error_line
from mnist_cli.training import distributed
from mnist_cli.training.interrupts import raise_on_sigterm

# Commands that are not Hydra stages: they read runs, not configs.
COMMANDS = {
    "report": "compare runs or sweeps: a ranked table, report.csv and plots (mnist report --help)",
}
EXAMPLES = """\
  mnist pretrain model=cnn
  mnist pretrain objective=contrastive     # self-supervised: no labels
  mnist pretrain dataset.root=~/data/mnist trainer.epochs=4
  mnist data dataset=folder dataset.root=my_images         # your images in class folders: look first,
  mnist pretrain dataset=folder dataset.root=my_images     # then train (dataset=csv: Kaggle's CSV files)
  mnist finetune ckpt=outputs/pretrain/<run> finetune.strategy=linear dataset.labels_per_class=10
  mnist finetune ckpt=latest dataset=fashion_mnist
  mnist eval ckpt=outputs/finetune/<run> eval.attack=pgd eval.corruptions=true
  mnist predict ckpt=latest input='my_digits/*.png'
  mnist export ckpt=latest format=onnx      # or torchscript, int8; prune=0.5 first
  mnist serve ckpt=latest                   # HTTP API + a page to draw digits on (http://127.0.0.1:8000/)
  mnist pretrain resume=outputs/pretrain/<run>
  mnist pretrain -m optimizer=adam,sgd optimizer.lr=1e-3,1e-2
  mnist pretrain -m hparams_search=optuna   # an Optuna search, continued when run again
  mnist report                              # rank the latest sweep's runs
  mnist pretrain --cfg job          # print the composed config and exit"""


def usage() -> str:
    width = max(map(len, [*stages(), *COMMANDS]))
    lines = [
        f"mnist {__version__}: pretrain, finetune and evaluate image classifiers on MNIST-style data.",
        "",
        "Usage: mnist <stage> [key=value ...] [-m] [--cfg job] [--help] [--info]",
        "",
        "Stages:",
        *(f"  {name:<{width}}  {stage.help}" for name, stage in stages().items()),
        "",
        "Other commands:",
        *(f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()),
        "",
        "Config groups (choose with group=option; set any field with group.key=value):",
    ]
    lines += [f"  {group:<14} {', '.join(options(group))}" for group in groups()]
    lines += [
        "",
        "Examples:",
        EXAMPLES,
        "",
        "Runs are written to outputs/<stage>/<date>_<time>/ (sweeps: outputs/multirun/...).",
        "`mnist <stage> --help` shows every config value; `--cfg job` prints the composed config.",
    ]
    return "\n".join(lines)


def fail(message: str, code: int = EXIT_USAGE) -> None:
    print(error_line(message), file=sys.stderr)
    sys.exit(code)


def under_torchrun(line: CommandLine) -> CommandLine:
    """Under torchrun, every rank runs this command; rank 0 alone makes and writes the run
    directory, the others keep no record (their Hydra output goes nowhere)."""
    if line.sweep:
        fail("sweeps (-m) do not run under torchrun; run each job with torchrun, or sweep without it")
    if stages()[line.stage].one_process:
        fail(f"{line.stage} runs in one process; run it without torchrun")
    if distributed.is_main():
        return line
    resume = [arg.removeprefix("resume=") for arg in line.overrides if arg.startswith("resume=")]
    scratch = resume[-1] if resume else tempfile.gettempdir()  # Hydra makes this folder; nothing is written in it
    return line.with_overrides(f"hydra.run.dir={scratch}", "hydra.output_subdir=null", "hydra/job_logging=disabled")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    if argv[0] == "--version":
        print(f"mnist {__version__}")
        return
    stage, args = argv[0], argv[1:]
    if stage == "report":
        from mnist_cli.report.runs import main as report

        try:
            report(args)
        except UserError as e:
            fail(str(e))
        return
    if stage not in stages():
        fail(f"unknown stage '{stage}': use one of {', '.join([*stages(), *COMMANDS])} (see `mnist --help`)")
    if "--help" in args or "-h" in args:
        from mnist_cli.config.help import help_text

        try:
            print(help_text(stage, args), end="")
        except KeyError as e:
            fail(f"--help {e.args[0]}: not a config group; use one of {', '.join(stages()[stage].groups)} or all")
        return
    raise_on_sigterm()
    try:
        line = read_command_line(stage, args)
        if distributed.world_size() > 1:
            line = under_torchrun(line)
        check_config(line)
        run_with_hydra(line)
    except UserError as e:
        fail(str(e))
    except KeyboardInterrupt as e:
        fail(
            "interrupted; the run keeps its last complete checkpoint: continue it with resume=<run dir>",
            getattr(e, "exit_code", EXIT_INTERRUPTED),
        )


def command() -> None:
    """The `mnist` command and `python -m mnist_cli`: main(), then an exit that skips the garbage
    collector's last passes over what is left (torch's modules: 0.5-0.7 s of every command's exit).
    By then the run's files are written and closed, and nothing left needs a finalizer."""
    try:
        main()
    finally:
        gc.freeze()


def run_with_hydra(line: CommandLine) -> None:
    """Hydra composes the config and runs the job (stages/job.py), or each job of a sweep; a sweep
    with failed jobs ends in EXIT_FAILED (report/sweeps.py)."""
    import hydra

    from mnist_cli.config.resolvers import register_resolvers
    from mnist_cli.stages.job import run_job

    register_resolvers()
    argv = sys.argv
    sys.argv = [argv[0], *line.hydra_argv()]  # where Hydra's parser reads the command line
    try:
        hydra.main(version_base="1.3", config_path="pkg://mnist_cli.conf", config_name="config")(run_job)()
    finally:
        sys.argv = argv


if __name__ == "__main__":
    command()
