"""Every model: output shapes, the backbone/head split, rebuilding from a checkpoint, freezing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from mnist_cli.config.compose import compose_config
from mnist_cli.config.validate import validate
from mnist_cli.errors import UserError
from mnist_cli.models import build_model
from mnist_cli.models.lora import LoRALinear, add_adapters, merged_state_dict
from mnist_cli.training.checkpoint import load_checkpoint, save_checkpoint
from mnist_cli.training.source import Source, model_from_checkpoint

from conftest import TINY_VIT, mnist, run_dirs, summary

# (overrides, feature width); sizes as the configs ship them.
MODELS = {
    "cnn": (["model=cnn"], 128),
    "cnn-fast": (["experiment=cnn_fast"], 256),
    "resnet18-small": (["model=resnet18"], 512),
    "resnet18-strided": (["model=resnet18", "model.stem=strided"], 512),
    "vit": (["model=vit"], 192),
    "vit-mean-patch7": (["model=vit", "model.pool=mean", "model.patch=7"], 192),
    "vit_mini": (["model=vit_mini"], 128),
}
# Small versions of each family for training on tiny data in a few seconds.


@pytest.mark.parametrize("name", MODELS)
def test_output_shapes_and_backbone_head_split(name: str) -> None:
    overrides, width = MODELS[name]
    model = build_model(compose_config(*overrides).model, 10).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        features = model.backbone(x)
        assert features.shape == (3, width) == (3, model.feature_dim)
        assert torch.allclose(model.head(features), model(x), atol=1e-6)
        assert model(x).shape == (3, 10)


@pytest.mark.parametrize(("overrides", "tokens"), [(["model=vit"], 1 + 49), (["model=vit_mini"], 16)])
def test_vit_backbone_returns_patch_tokens(overrides: list[str], tokens: int) -> None:
    cfg = compose_config(*overrides)
    backbone = build_model(cfg.model, 10).backbone
    assert backbone.forward_tokens(torch.zeros(2, 1, 28, 28)).shape == (2, tokens, cfg.model.dim)


@pytest.mark.parametrize("name", MODELS)
def test_rebuilt_from_a_checkpoints_config(tmp_path: Path, name: str) -> None:
    cfg = compose_config(*MODELS[name][0])
    model = build_model(cfg.model, 7).eval()
    save_checkpoint(
        tmp_path / "m.ckpt",
        {
            "config": OmegaConf.to_container(cfg),
            "num_classes": 7,
            "objective": "supervised",
            "model": model.state_dict(),
        },
    )
    rebuilt = model_from_checkpoint(load_checkpoint(tmp_path / "m.ckpt")).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.stem=big", "small or strided"),
        ("model.patch=5", "divides 28"),
        ("model.heads=5", "divisible by model.heads=5"),
        ("model.kernel_size=[5,3]", "gives 2 sizes for 3 stages"),
        ("model.kernel_size=4", "an odd size"),
        ("model.kernel_size=5 model.padding=valid", "shrink to nothing"),
    ],
)
def test_bad_model_settings_are_refused(override: str, message: str) -> None:
    model = "model=resnet18" if "stem" in override else "model=cnn" if "kernel" in override else "model=vit"
    with pytest.raises(UserError, match=message):
        validate(compose_config(model, *override.split()))


@pytest.mark.parametrize("convs", [1, 2])
def test_a_cnn_stage_pools_before_its_last_relu_and_answers_as_if_after(convs: int) -> None:
    """max(relu(x)) == relu(max(x)): the cheaper order gives the very same outputs and gradients as
    conv-BN-ReLU-pool, and its stages end after the ReLU."""
    model = build_model(compose_config("model=cnn", f"model.convs={convs}").model, 10).eval()
    layers = list(model.backbone)
    ends = [i for i, layer in enumerate(layers) if isinstance(layer, nn.MaxPool2d)]
    assert all(isinstance(layers[i + 1], nn.ReLU) for i in ends)
    for i in ends:  # the textbook order, same weights
        layers[i], layers[i + 1] = layers[i + 1], layers[i]
    textbook = nn.Sequential(*layers, *model.head)
    x = torch.randn(8, 1, 28, 28, requires_grad=True)
    ours, theirs = model(x), textbook(x)
    assert torch.equal(ours, theirs)
    (grad_ours,) = torch.autograd.grad(ours.sum(), x)
    (grad_theirs,) = torch.autograd.grad(theirs.sum(), x)
    assert torch.equal(grad_ours, grad_theirs)
    assert [len(block) for block in model.blocks] == [3 * convs + 1] * 3 + [
        1
    ]  # per stage: convs x (conv, BN, ReLU) and the pool; the hidden layer


# cnn: tests/test_cli.py; the frozen resnet18 backbone, in process: tests/test_trainer.py
@pytest.mark.slow
def test_vit_pretrain_eval_round_trip_and_frozen_or_lora_finetune(tmp_path: Path, tiny_data: Path) -> None:
    """pretrain -> eval gives the recorded accuracy; finetuning with a frozen backbone or with LoRA
    adapters keeps the pretrained weights."""
    assert (
        mnist(
            "pretrain",
            f"dataset.root={tiny_data}",
            *TINY_VIT,
            "trainer.epochs=1",
            "trainer.min_steps=0",
            "trainer.batch_size=32",
            cwd=tmp_path,
        ).returncode
        == 0
    )
    [run] = run_dirs(tmp_path, "pretrain")

    # One sweep for both strategies; best.ckpt of LoRA holds the adapters merged, as a plain model.
    finetune = mnist(
        "finetune",
        "-m",
        f"ckpt={run}",
        "finetune.strategy=linear,lora",
        "trainer.epochs=1",
        "trainer.min_steps=0",
        "trainer.batch_size=32",
        cwd=tmp_path,
    )
    assert finetune.returncode == 0, finetune.stderr
    [sweep] = run_dirs(tmp_path, "multirun")
    linear_run, lora_run = sweep / "0", sweep / "1"
    before = load_checkpoint(run / "checkpoints" / "best.ckpt")["model"]
    after = load_checkpoint(linear_run / "checkpoints" / "last.ckpt")["model"]
    backbone = [k for k in before if k.startswith("backbone.")]
    assert backbone and all(torch.equal(before[k], after[k]) for k in backbone)
    assert not all(torch.equal(before[k], after[k]) for k in after if k.startswith("head."))

    # LoRA: only the adapters (and the head) train
    last = load_checkpoint(lora_run / "checkpoints" / "last.ckpt")["model"]
    assert all(torch.equal(before[k], last[k]) for k in backbone)
    assert any(".lora_b" in k and last[k].abs().sum() > 0 for k in last)
    assert load_checkpoint(lora_run / "checkpoints" / "best.ckpt")["model"].keys() == before.keys()

    # eval of the pretrained and of the LoRA-merged model (one sweep): each gives its recorded accuracy
    evaluate = mnist("eval", "-m", f"ckpt={run},{lora_run}", cwd=tmp_path)
    assert evaluate.returncode == 0, evaluate.stderr
    eval_sweep = run_dirs(tmp_path, "multirun")[-1]
    for job, trained in (("0", run), ("1", lora_run)):
        recorded = summary(trained)["test_acc"]
        assert json.loads((eval_sweep / job / "eval.json").read_text())["test_acc"] == recorded


def test_experiment_presets_pick_each_models_recipe() -> None:
    vit = compose_config("experiment=vit")
    assert (vit.model.name, vit.optimizer._target_, vit.scheduler._target_, vit.scheduler.warmup_epochs) == (
        "vit",
        "torch.optim.AdamW",
        "mnist_cli.training.schedules.cosine",
        2,
    )
    assert compose_config("experiment=vit_mini").model.patch == 7
    resnet = compose_config("experiment=resnet18", "model.stem=strided")
    assert (resnet.model.name, resnet.model.stem, resnet.optimizer._target_) == (
        "resnet18",
        "strided",
        "torch.optim.SGD",
    )
    assert (
        compose_config("experiment=vit").trainer.batch_size == compose_config().trainer.batch_size
    )  # only differences


def test_finetune_accepts_the_checkpoints_model_option_and_refuses_another() -> None:
    source = Source([Path("x")], [{"config": OmegaConf.to_container(compose_config("model=vit_mini"))}])
    same = compose_config("stage=finetune", "ckpt=x", "model=vit_mini")  # vit_mini is a size of `vit`
    assert source.config(same, ["ckpt=x", "model=vit_mini"])["model"]["patch"] == 7
    other = compose_config("stage=finetune", "ckpt=x", "model=cnn")
    with pytest.raises(UserError, match="model=cnn does not match the checkpoint, which holds a vit"):
        source.config(other, ["ckpt=x", "model=cnn"])


def test_a_model_config_naming_no_importable_class_is_refused() -> None:
    with pytest.raises(UserError, match="model._target_=mnist_cli.models.vgg.VGG cannot be imported"):
        build_model(compose_config("model._target_=mnist_cli.models.vgg.VGG").model, 10)


def test_a_checkpoint_whose_model_config_has_only_a_name_still_loads(tmp_path: Path) -> None:
    cfg = compose_config("model=cnn")
    old = OmegaConf.to_container(cfg)
    del old["model"]["_target_"], old["model"]["convs"]  # the model config of an older mnist
    old["model"]["channels"] = [4, 8]
    model = build_model(OmegaConf.create(old["model"] | {"_target_": cfg.model._target_, "convs": 1}), 10).eval()
    save_checkpoint(
        tmp_path / "old.ckpt",
        {"config": old, "num_classes": 10, "objective": "supervised", "model": model.state_dict()},
    )
    source = Source.load(str(tmp_path / "old.ckpt"), "outputs")
    assert source.checkpoints[0]["config"]["model"]["_target_"] == "mnist_cli.models.cnn.cnn"  # its name's
    rebuilt = source.model().eval()
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(rebuilt(x), model(x))
    finetune = compose_config("stage=finetune", "ckpt=x")
    described = source.config(finetune, ["ckpt=x"])  # what a finetune of it saves, and a resume rebuilds
    assert described["model"]["_target_"] == "mnist_cli.models.cnn.cnn" and described["model"]["channels"] == [4, 8]


def test_a_checkpoint_of_an_older_mnist_names_its_backbone_class_and_data_format(tmp_path: Path) -> None:
    """Before conf/model named the function that builds the classifier it named the backbone class,
    before conf/dataset named its reader it said its format, and the objective and logger named
    nothing: all read as this mnist's words."""
    cfg = compose_config(*TINY_VIT, "objective=contrastive", "logger=tensorboard")
    old = OmegaConf.to_container(cfg)
    old["model"]["_target_"] = "mnist_cli.models.vit.ViTBackbone"
    del old["dataset"]["reader"], old["objective"]["_target_"], old["logger"]["_target_"]
    old["dataset"]["format"] = "folder"
    model = build_model(cfg.model, 10)
    save_checkpoint(
        tmp_path / "old.ckpt",
        {"config": old, "num_classes": 10, "objective": "supervised", "model": model.state_dict()},
    )
    saved = load_checkpoint(tmp_path / "old.ckpt")["config"]
    assert saved["model"]["_target_"] == "mnist_cli.models.vit.vit" and "format" not in saved["dataset"]
    assert saved["dataset"]["reader"] == {"_target_": "mnist_cli.data.folder.read"}
    assert saved["objective"]["_target_"] == "mnist_cli.objectives.contrastive.Contrastive"  # (a resume builds them)
    assert saved["logger"]["_target_"] == "mnist_cli.loggers.tensorboard.TensorBoard"


def test_lora_merged_weights_give_the_adapted_models_outputs() -> None:
    cfg = compose_config(*TINY_VIT)
    model = build_model(cfg.model, 10).eval()
    model.freeze_backbone()
    assert add_adapters(model.backbone, rank=2, alpha=4) == 2 * 4  # qkv, proj and two MLP layers per block
    for module in model.modules():
        if isinstance(module, LoRALinear):
            nn.init.normal_(module.lora_b)  # an update as training would make
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in name or name.startswith("head.") for name in trainable)
    plain = build_model(cfg.model, 10).eval()
    plain.load_state_dict(merged_state_dict(model))  # the plain layer names, no lora_* keys
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        expected = model(x)
        assert torch.allclose(plain(x), expected, atol=1e-5)
        assert not torch.allclose(build_model(cfg.model, 10).eval()(x), expected)
        model.load_state_dict(merged_state_dict(model))  # the adapted model loads a merged best.ckpt too
        assert torch.allclose(model(x), expected, atol=1e-5)
        assert all(not m.lora_b.any() for m in model.modules() if isinstance(m, LoRALinear))
