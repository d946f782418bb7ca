"""The `mnist` command end to end, in subprocesses, on tiny generated data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image

from conftest import FAST, TINY_VIT, mnist, run_dirs, summary


@pytest.mark.slow
def test_pretrain_finetune_eval(tmp_path: Path, tiny_data: Path) -> None:
    # every stage in bf16, which runs on any CPU (slowly without native support): a dtype error shows everywhere
    bf16 = "trainer.precision=bf16"
    pretrain = mnist("pretrain", f"dataset.root={tiny_data}", *FAST, bf16, "trainer.target_accuracy=0.5", cwd=tmp_path)
    assert pretrain.returncode == 0, pretrain.stderr
    [run] = run_dirs(tmp_path, "pretrain")
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "summary.json",
        "run.log",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        ".hydra/config.yaml",
    ):
        assert (run / name).is_file(), name
    s = summary(run)
    assert s["status"] == "completed" and s["epochs_run"] == 2 and s["test_acc"] > 0.9
    assert s["versions"]["torch"] and s["device"] == "cpu" and s["wall_time_s"] > 0 and s["precision"] == "bf16"
    assert 0 < s["time_to_target_s"] <= s["train_time_s"] + 5 and s["images_per_s"] > 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all(r["images_per_s"] > 0 and r["epoch_time_s"] > 0 for r in rows)

    # The model and the data set come from the checkpoint: no model= or dataset.root= needed. (The
    # teacher here is the same model: what is checked is that distillation runs and is recorded.)
    finetune = mnist(
        "finetune",
        f"ckpt={run}",
        bf16,
        "trainer.epochs=1",
        "trainer.min_steps=0",
        "finetune.strategy=linear",
        f"teacher={run}",
        cwd=tmp_path,
    )
    assert finetune.returncode == 0, finetune.stderr
    [ft_run] = run_dirs(tmp_path, "finetune")
    ft = summary(ft_run)
    assert (
        ft["status"] == "completed"
        and ft["source_checkpoint"] == str(run / "checkpoints" / "best.ckpt") == ft["teacher"]
    )
    assert "distilling from" in finetune.stderr + finetune.stdout
    assert "channels:\n  - 8\n  - 16" in (ft_run / "config.yaml").read_text()

    evaluate = mnist(
        "eval",
        f"ckpt={ft_run}",
        bf16,
        "eval.attack=[fgsm,pgd]",
        "eval.eps=[0.1]",
        "eval.pgd_steps=3",
        "eval.corruptions=true",
        "eval.tta=true",
        cwd=tmp_path,
    )
    assert evaluate.returncode == 0, evaluate.stderr
    [eval_run] = run_dirs(tmp_path, "eval")
    settled = OmegaConf.load(eval_run / "config.yaml")  # what the checkpoint described, as the run used it
    assert settled.ckpt == str(ft_run / "checkpoints" / "best.ckpt") and settled.model.channels == [8, 16]
    report = json.loads((eval_run / "eval.json").read_text())
    assert report["test_acc"] == ft["test_acc"] <= report["top2_acc"] and 0 <= report["ece"] <= 1
    assert len(report["per_class"]) == 10 and sum(map(sum, report["confusion_matrix"])) == 128
    assert sum(b["count"] for b in report["calibration_bins"]) == 128 and 0 <= report["tta_acc"] <= 1
    assert report["attacks"]["pgd"]["0.1"] <= report["attacks"]["fgsm"]["0.1"] <= report["test_acc"]
    assert set(report["corruptions"]) == {"noise", "blur", "shift", "rotation", "contrast"}
    for name in ("confusion_matrix.png", "reliability.png"):
        with Image.open(eval_run / name) as image:
            assert image.format == "PNG" and image.width > 300
            image.load()
    for line in (
        "Confusion matrix",
        "test accuracy",
        "calibration error (ECE)",
        "FGSM eps=0.1",
        "PGD eps=0.1",
        "rotation",
    ):
        assert line in evaluate.stdout

    exported = mnist(
        "export", "ckpt=latest", bf16, "format=int8", "prune=0.5", cwd=tmp_path
    )  # latest: the finetuned best.ckpt
    assert exported.returncode == 0, exported.stderr
    [export_run] = run_dirs(tmp_path, "export")
    record = json.loads((export_run / "export.json").read_text())
    assert (tmp_path / record["checkpoint"]).resolve() == ft_run / "checkpoints" / "best.ckpt"
    # the export's reference is the float32 model, finetune tested in bf16
    assert abs(record["reference_acc"] - ft["test_acc"]) <= 2 / 128 and record["check_images"] == 128
    assert record["reference_acc"] - record["exported_acc"] <= 0.01 and record["pruned_weights"] > 0
    assert (export_run / "model.int8.pt").stat().st_size == record["file_bytes"] < record["comparison"][0]["bytes"]
    assert "model.int8.pt (int8)" in exported.stdout and "pruned 50%" in exported.stdout

    (tmp_path / "mine").mkdir()
    for i in range(2):
        Image.new("L", (40, 50), 255).save(tmp_path / "mine" / f"{i}.png")  # paper ...
        with Image.open(tmp_path / "mine" / f"{i}.png") as image:
            image.paste(0, (15 + i * 5, 10, 25 + i * 5, 40))  # ... with a dark stroke
            image.save(tmp_path / "mine" / f"{i}.png")
    predicted = mnist("predict", f"ckpt={ft_run}", bf16, f"input={tmp_path / 'mine'}", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    [predict_run] = run_dirs(tmp_path, "predict")
    assert len((predict_run / "predictions.csv").read_text().splitlines()) == 3  # header and two images


@pytest.mark.slow
def test_stop_at_target_ends_the_run_and_records_the_time_to_it(tmp_path: Path, tiny_data: Path) -> None:
    stop = ["trainer.epochs=4", "trainer.target_accuracy=0.5", "trainer.stop_at_target=true"]
    result = mnist("pretrain", f"dataset.root={tiny_data}", *FAST, *stop, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [run] = run_dirs(tmp_path, "pretrain")
    s = summary(run)
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert first["val_acc"] >= 0.5 and s["epochs_run"] == 1 and s["stopped_at_target"] and not s["stopped_early"]
    assert s["time_to_target_s"] == round(first["elapsed_s"], 3) and s["steps_run"] == 243 // 32
    assert "reached trainer.target_accuracy" in result.stderr + result.stdout


@pytest.mark.slow
def test_a_run_of_few_steps_says_so_before_it_starts(tmp_path: Path, tiny_data: Path) -> None:
    """FAST: 243 images in batches of 32, 2 epochs, no minimum: 14 optimizer steps. With
    trainer.select=last every epoch is kept, so no epoch is marked best."""
    result = mnist("pretrain", f"dataset.root={tiny_data}", *FAST, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    said = [line for line in (result.stderr + result.stdout).splitlines() if "too few to learn" in line]
    assert len(said) == 1 and "only 14 optimizer steps" in said[0] and "trainer.min_steps" in said[0]
    [run] = run_dirs(tmp_path, "pretrain")
    assert (
        summary(run)["warnings"] == [said[0][said[0].index("this run") :].strip()] and summary(run)["steps_run"] == 14
    )
    assert "*best*" not in result.stderr + result.stdout
    sized = mnist(
        "pretrain", f"dataset.root={tiny_data}", *FAST, "trainer.min_steps=50", "trainer.select=val_acc", cwd=tmp_path
    )
    assert sized.returncode == 0 and "too few" not in sized.stderr + sized.stdout and "*best*" in sized.stdout
    assert summary(run_dirs(tmp_path, "pretrain")[-1])["epochs_run"] == 8  # ceil(50 / 7) epochs


@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (["pretrain", "optimizer.lr=-1"], 2, "optimizer.lr=-1 is not valid"),
        (["pretrain", "--cfg", "job"], 0, "_target_: mnist_cli.models.cnn.cnn"),
        (["finetune", "--help"], 0, "finetune.strategy=full"),
    ],
)
def test_config_errors_help_and_printing_the_config_do_not_import_torch(
    tmp_path: Path, args: list[str], code: int, said: str
) -> None:
    script = (
        "import sys\nfrom mnist_cli.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit as e:\n    assert (e.code or 0) == {code}, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert said in result.stdout + result.stderr


def test_hydra_flags_keep_working(tmp_path: Path) -> None:
    cfg = mnist("pretrain", "optimizer=sgd", "--cfg", "job", cwd=tmp_path)
    assert cfg.returncode == 0 and "_target_: torch.optim.SGD" in cfg.stdout and "momentum: 0.9" in cfg.stdout
    assert not (tmp_path / "outputs").exists()  # it ran no job
    top = mnist("--help", cwd=tmp_path)
    assert top.returncode == 0 and "Stages:" in top.stdout


@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (["pretrain", "dataset.root=~/mnist-data", "--cfg", "job"], 0, f"root: {Path.home()}/mnist-data"),
        (["pretrain", "--info"], 0, "Installed Hydra Plugins"),
        (["pretrain", "-i", "defaults"], 0, "Defaults List"),
        (["pretrain", "--hydra-help"], 0, "== Flags =="),
        (["pretrain", "--cfg", "hydra"], 0, "mnist_run_dir"),
        (["pretrain", "--cfg", "job", "--resolve"], 0, "root: ~/.cache/mnist-cli"),
        (["pretrain", "--resolve"], 2, "--resolve resolves the job's config that --cfg job prints"),
        (["pretrain", "--cfg", "all", "--resolve"], 2, "--resolve resolves the job's config"),
        (["pretrain", "--shell-completion", "install=bash"], 2, "shell completion is not supported"),
        (["pretrain", "--config-dir", "nowhere"], 2, "--config-dir nowhere: no such folder"),
    ],
)
def test_hydra_flags_work_or_are_refused_in_one_line(tmp_path: Path, args: list[str], code: int, said: str) -> None:
    result = mnist(*args, cwd=tmp_path)
    assert result.returncode == code and said in result.stdout + result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "outputs").exists()  # nothing ran, nothing was made
    if code:
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("mnist: error: ")


@pytest.mark.slow
def test_a_model_option_of_ones_own_takes_a_shipped_ones_class_and_states_its_differences(
    tmp_path: Path, tiny_data: Path
) -> None:
    mine = tmp_path / "my_conf" / "model"
    mine.mkdir(parents=True)
    (mine / "small_cnn.yaml").write_text("defaults: [cnn, _self_]\nchannels: [4, 8]\nhidden: 16\n")
    (mine / "bare.yaml").write_text("name: cnn\nchannels: [4, 8]\nhidden: 16\n")  # names no backbone class
    conf = [
        "--config-dir",
        str(tmp_path / "my_conf"),
        f"dataset.root={tiny_data}",
        "trainer.epochs=1",
        "trainer.min_steps=0",
    ]
    done = mnist("pretrain", *conf, "model=small_cnn", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [run] = run_dirs(tmp_path, "pretrain")
    assert summary(run)["parameters"] < 10_000  # the 4-8 widths, not the shipped cnn's 0.11M
    refused = mnist("pretrain", *conf, "model=bare", cwd=tmp_path)
    assert refused.returncode == 2 and "model._target_ is not set" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and run_dirs(tmp_path, "pretrain") == [run]


@pytest.mark.slow
def test_a_bare_resume_continues_with_the_runs_own_choices(tmp_path: Path, tiny_data: Path) -> None:
    """`resume=<run dir>` alone, of a run that chose other options than the defaults and whose
    checkpoint names no backbone class (an older mnist's): the saved groups, not the defaults'."""
    from mnist_cli.training.checkpoint import load_checkpoint, save_checkpoint

    chosen = ["optimizer=sgd", "scheduler=cosine", *TINY_VIT, "trainer.epochs=2", "trainer.min_steps=0"]
    done = mnist("pretrain", f"dataset.root={tiny_data}", *chosen, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [run] = run_dirs(tmp_path, "pretrain")
    last = run / "checkpoints" / "last.ckpt"
    ckpt = load_checkpoint(last)
    del ckpt["config"]["model"]["_target_"]
    save_checkpoint(last, ckpt)
    (run / "summary.json").write_text(json.dumps({**summary(run), "status": "interrupted"}))
    resumed = mnist("pretrain", f"resume={run}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    config = OmegaConf.load(run / "config.yaml")
    assert config.optimizer._target_ == "torch.optim.SGD" and "betas" not in config.optimizer  # not adamw's
    assert config.model.name == "vit" and "channels" not in config.model  # not cnn's
    assert config.model._target_ == "mnist_cli.models.vit.vit"  # what its name stands for
    assert config.scheduler == OmegaConf.load(run / ".hydra" / "config.yaml").scheduler


@pytest.mark.slow
def test_a_run_saved_before_newer_keys_existed_resumes_with_their_defaults(tmp_path: Path, tiny_data: Path) -> None:
    from mnist_cli.training.checkpoint import load_checkpoint, save_checkpoint

    args = ["pretrain", f"dataset.root={tiny_data}", *FAST]
    done = mnist(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [run] = run_dirs(tmp_path, "pretrain")
    last = run / "checkpoints" / "last.ckpt"
    ckpt = load_checkpoint(last)
    ckpt["config"].pop("calibrate")  # as an older mnist wrote it: keys it did not have yet
    ckpt["config"]["dataset"].pop("reader")
    ckpt["config"]["preprocess"].pop("mode")
    save_checkpoint(last, ckpt)
    before = {k: v for k, v in summary(run).items() if k != "temperature"}
    (run / "summary.json").write_text(json.dumps({**before, "status": "interrupted"}))  # stopped at the end
    resumed = mnist(*args, f"resume={run}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert summary(run)["status"] == "completed" and summary(run)["epochs_run"] == 2
    assert "temperature" in summary(run)  # calibrate took its default


def test_the_command_leaves_what_is_left_out_of_the_collectors_last_passes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`mnist` (cli.command) freezes the objects left when main() returns, so the interpreter's exit
    does not walk torch's modules again."""
    import gc

    from mnist_cli.cli import command

    monkeypatch.setattr(sys, "argv", ["mnist", "--version"])
    gc.unfreeze()
    try:
        command()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert capsys.readouterr().out.startswith("mnist ")
