"""The custom configuration `configs/tensorrt.pbtxt` of an ONNX model,
derived from its config.pbtxt for the TensorRT plan built from the same
ONNX file."""

from __future__ import annotations

from tritonclient.grpc import model_config_pb2 as mc

from lint import pbtxt
from lint.engine_configs import ENGINE_PARAMETERS, engine_of

HEADER = (
    "# Written by the export (export/common/formats.py) from config.pbtxt: the\n"
    "# TensorRT plan of the same network. Served with tritonserver --model-config-name=tensorrt.\n"
)
CPU_ENGINE_PARAMETERS = tuple(key for keys in ENGINE_PARAMETERS.values() for key in keys)


def tensorrt_config(onnx_config_text: str, max_batch: int) -> str:
    """config.pbtxt of an ONNX network (onnxruntime or openvino) -> the same
    model as a TensorRT plan: platform tensorrt_plan, model.plan, GPU
    instances, max_batch_size within the engine's profile, the CPU engines'
    parameters dropped."""
    config = pbtxt.parse(onnx_config_text)
    if engine_of(config) is None:
        raise ValueError(f"{config.name}: not an ONNX network (backend {config.backend!r}, platform {config.platform!r})")
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
    for key in CPU_ENGINE_PARAMETERS:
        if key in config.parameters:
            del config.parameters[key]
    config.ClearField("optimization")
    return HEADER + pbtxt.to_text(config)
