"""Edits the exports make to model configs.

- `set_tensor_dims`: a checkpoint of another size (a CLIP with another
  projection width, a ViT at another resolution) changes a tensor's dims in
  the committed configs; the line is edited in place, comments kept.
- `tensorrt_config`: the custom configuration `configs/tensorrt.pbtxt` of an
  ONNX model, derived from its config.pbtxt for the TensorRT plan built
  from the same ONNX file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

HEADER = (
    "# Written by the export (pipelines/export/formats.py) from config.pbtxt: the\n"
    "# TensorRT plan of the same network. Served with tritonserver --model-config-name=tensorrt.\n"
)
ONNXRUNTIME_ONLY_PARAMETERS = ("intra_op_thread_count", "inter_op_thread_count")


def _dims_text(dims: Sequence[int]) -> str:
    return "[ " + ", ".join(str(int(d)) for d in dims) + " ]"


def set_tensor_dims(text: str, tensor: str, dims: Sequence[int]) -> str:
    """The config text with `dims` of the input/output named `tensor`
    replaced (ValueError when the config declares no such tensor)."""
    pattern = re.compile(r'(\{\s*name:\s*"' + re.escape(tensor) + r'"[^{}]*?dims:\s*)\[[^\]]*\]')
    updated, count = pattern.subn(lambda m: m.group(1) + _dims_text(dims), text)
    if count == 0:
        raise ValueError(f"no tensor named {tensor!r} with dims in this config")
    return updated


def update_dims(config_path: Path, changes: dict[str, Sequence[int]], log=print) -> bool:
    """Apply set_tensor_dims for each tensor; write and say so when it changed."""
    text = config_path.read_text()
    updated = text
    for tensor, dims in changes.items():
        updated = set_tensor_dims(updated, tensor, dims)
    if updated != text:
        config_path.write_text(updated)
        log(f"{config_path}: dims set to " + ", ".join(f"{t} {_dims_text(d)}" for t, d in changes.items()))
        return True
    return False


def tensorrt_config(onnx_config_text: str, max_batch: int) -> str:
    """config.pbtxt of an onnxruntime model -> the same model as a TensorRT
    plan: platform tensorrt_plan, model.plan, GPU instances, max_batch_size
    within the engine's profile, the ONNX Runtime thread parameters dropped."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    config = mc.ModelConfig()
    text_format.Parse(onnx_config_text, config)
    if config.backend != "onnxruntime" and config.platform != "onnxruntime_onnx":
        raise ValueError(f"{config.name}: not an ONNX Runtime model (backend {config.backend!r}, platform {config.platform!r})")
    config.ClearField("backend")
    config.platform = "tensorrt_plan"
    config.default_model_filename = "model.plan"
    if config.max_batch_size > 0:
        config.max_batch_size = min(config.max_batch_size, max_batch)
    if config.HasField("dynamic_batching"):
        kept = [size for size in config.dynamic_batching.preferred_batch_size if size <= config.max_batch_size]
        del config.dynamic_batching.preferred_batch_size[:]
        config.dynamic_batching.preferred_batch_size.extend(kept)
    for group in config.instance_group:
        group.kind = mc.ModelInstanceGroup.KIND_GPU
        group.count = 1
    for key in ONNXRUNTIME_ONLY_PARAMETERS:
        if key in config.parameters:
            del config.parameters[key]
    config.ClearField("optimization")
    return HEADER + text_format.MessageToString(config)
