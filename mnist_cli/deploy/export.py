"""Exporting a trained classifier to run without this package, and making it smaller:
TorchScript, ONNX (checked with onnxruntime), int8 dynamic quantization, magnitude pruning.
Every exported file takes normalized 28x28 images, (N, 1, 28, 28) float, and returns logits; the
normalization it expects is recorded in the file (see `preprocessing`)."""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from mnist_cli.errors import UserError
from mnist_cli.run_dir import write_bytes

Predict = Callable[[torch.Tensor], torch.Tensor]  # normalized images -> logits


def preprocessing(dataset: Any) -> dict[str, Any]:
    """What an exported model expects of its input, recorded inside the file."""
    return {
        "input": "float32 (N, 1, 28, 28): grayscale pixels x in [0, 1] (light digit on black), normalized as (x - mean) / std",
        "mean": float(dataset.mean),
        "std": float(dataset.std),
        "classes": list(dataset.classes),
        "output": "logits (N, classes); softmax for probabilities",
    }


def prune_weights(model: nn.Module, amount: float) -> int:
    """Zero the `amount` share of conv and linear weights with the smallest magnitude, over the
    whole model at once (global L1 pruning), and make it permanent; returns the weights zeroed."""
    layers = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    torch_prune.global_unstructured(layers, pruning_method=torch_prune.L1Unstructured, amount=amount)
    for module, name in layers:
        torch_prune.remove(module, name)
    return sum(int((m.weight == 0).sum()) for m, _ in layers)


def quantize_int8(model: nn.Module) -> nn.Module:
    """Post-training dynamic quantization: linear layers' weights stored as int8, activations
    quantized on the fly (CPU). Convolutions stay float."""
    return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def torchscript_bytes(model: nn.Module, example: torch.Tensor, info: dict[str, Any]) -> bytes:
    """TorchScript (deprecated upstream in favour of torch.export, but what C++/mobile runtimes load)."""
    traced = torch.jit.trace(model, example, check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer, _extra_files={"preprocessing.json": json.dumps(info)})
    return buffer.getvalue()


def load_torchscript(path: Path) -> tuple[Predict, dict[str, Any]]:
    extra = {"preprocessing.json": ""}
    module = torch.jit.load(str(path), _extra_files=extra)
    return module, json.loads(extra["preprocessing.json"])


def onnx_bytes(model: nn.Module, example: torch.Tensor, info: dict[str, Any], opset: int) -> bytes:
    try:
        import onnx
    except ImportError:
        raise UserError("format=onnx needs the onnx packages: pip install 'mnist-cli[export]'") from None
    program = torch.onnx.export(
        model,
        (example,),
        input_names=["image"],
        output_names=["logits"],
        opset_version=opset,
        dynamo=True,
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        verbose=False,
    )
    proto = program.model_proto
    for key, value in info.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def json_or_text(value: str) -> Any:
    """A metadata value: JSON as written by `onnx_bytes`, or plain text as other tools write it."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def load_onnx(path: Path, threads: int | None = None) -> tuple[Predict, dict[str, Any]]:
    """The file's predict function and what it records; `threads`: onnxruntime's threads for one
    run (None: its default, every core)."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError("running an ONNX file needs onnxruntime: pip install 'mnist-cli[export]'") from None
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's own errors name no common class
        raise UserError(
            f"{path}: not a readable ONNX model ({str(e).splitlines()[0][:200]}); use a file from `mnist export`"
        ) from None
    info = {key: json_or_text(value) for key, value in session.get_modelmeta().custom_metadata_map.items()}

    def predict(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(["logits"], {"image": x.cpu().numpy()})[0])

    return predict, info


def export(model: nn.Module, fmt: str, path: Path, example: torch.Tensor, info: dict[str, Any], opset: int) -> Predict:
    """Write `model` to `path` in format `fmt` (torchscript | onnx | int8: a quantized TorchScript
    file) and return the exported file's own predict function, loaded back from disk."""
    model = model.cpu().eval()
    example = example.cpu()
    with warnings.catch_warnings():
        # TorchScript and torch.ao quantization are deprecated upstream (the README says so); the
        # formats asked for still work, and their warnings on every export would only be noise.
        warnings.filterwarnings("ignore", message=r".*(deprecated|will be removed)")
        return write_and_load(model, fmt, path, example, info, opset)


def write_and_load(
    model: nn.Module, fmt: str, path: Path, example: torch.Tensor, info: dict[str, Any], opset: int
) -> Predict:
    if fmt == "onnx":
        write_bytes(path, onnx_bytes(model, example, info, opset))
        predict, _ = load_onnx(path)
    else:
        write_bytes(path, torchscript_bytes(quantize_int8(model) if fmt == "int8" else model, example, info))
        predict, _ = load_torchscript(path)
    return predict
