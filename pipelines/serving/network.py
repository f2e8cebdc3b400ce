"""A network model: a config written for one of Triton's native framework
backends, served by a Python-based backend of the same name (see
backends/). The requests of one execute (already validated against the
config by BatchModel) are stacked into one engine run where their non-batch
shapes agree, grouped otherwise, and the outputs split back per request
(pipelines.serving.batching).

Engines:
- `onnxruntime` (`OnnxRuntimeSession`): instance_group kind (CPU provider;
  CUDA, and TensorRT when configured as a GPU execution accelerator, where
  onnxruntime-gpu and a GPU exist), the `intra_op_thread_count` /
  `inter_op_thread_count` parameters, and `session.*` parameters passed
  as session config entries (`session.intra_op.allow_spinning`: "0" stops
  idle pool threads spinning on cores that other stages need; the native
  backend ignores parameters it does not know).
- `openvino` (`OpenVinoSession`): the CPU device, reading the ONNX file
  directly, with the native openvino backend's `PERFORMANCE_HINT`,
  `NUM_STREAMS`, `INFERENCE_NUM_THREADS` and `ENABLE_BATCH_PADDING`
  parameters."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from pipelines.serving.batching import grouped_by_shape, stacked
from pipelines.serving.partition import per_item
from pipelines.serving.python_model import ModelContext, RequestTensors
from pipelines.serving.tensors import RequestError, TensorSpec


def _gpu_accelerators(config: dict) -> list[str]:
    accelerators = config.get("optimization", {}).get("execution_accelerators", {})
    return [a.get("name", "") for a in accelerators.get("gpu_execution_accelerator", [])]


def choose_providers(config: dict, instance_kind: str, device_id: int, available: Sequence[str]) -> list:
    """CPU provider on CPU instances; CUDA (and TensorRT when configured as an
    accelerator) on GPU instances when this onnxruntime build has them."""
    providers: list = []
    if instance_kind.upper().endswith("GPU"):
        if "tensorrt" in _gpu_accelerators(config) and "TensorrtExecutionProvider" in available:
            providers.append(("TensorrtExecutionProvider", {"device_id": device_id}))
        if "CUDAExecutionProvider" in available:
            providers.append(("CUDAExecutionProvider", {"device_id": device_id}))
    providers.append("CPUExecutionProvider")
    return providers


def model_path(context: ModelContext) -> str:
    return str(context.file(context.config.get("default_model_filename") or "model.onnx"))


class OnnxRuntimeSession:
    """onnxruntime.InferenceSession configured as Triton's onnxruntime backend would."""

    engine = "onnxruntime"

    def __init__(self, context: ModelContext):
        import onnxruntime as ort  # here: a stub loads the one engine its model runs

        options = ort.SessionOptions()
        intra = context.parameter("intra_op_thread_count")
        inter = context.parameter("inter_op_thread_count")
        if intra:
            options.intra_op_num_threads = int(intra)
        if inter:
            options.inter_op_num_threads = int(inter)
            options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        for key, value in session_config_entries(context.config).items():
            options.add_session_config_entry(key, value)
        providers = choose_providers(context.config, context.instance_kind, context.device_id, ort.get_available_providers())
        self.session = ort.InferenceSession(model_path(context), sess_options=options, providers=providers)
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.output_names = {o.name for o in self.session.get_outputs()}

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def run(self, outputs: Sequence[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(list(outputs), feeds)


def session_config_entries(config: dict) -> dict[str, str]:
    """The `session.*` parameters, ONNX Runtime session config entries as they are."""
    parameters = config.get("parameters", {})
    return {key: value.get("string_value", "") for key, value in parameters.items() if key.startswith("session.")}


# The parameters of Triton's native openvino backend this stand-in honours,
# as OpenVINO CPU properties; the rest of the native ones do not apply here.
OPENVINO_PROPERTIES = {"PERFORMANCE_HINT": str, "NUM_STREAMS": str, "INFERENCE_NUM_THREADS": int}


def openvino_properties(config: dict) -> dict:
    """compile_model properties from the config's parameters. f32 unless the
    config says otherwise: the CPU plugin otherwise picks bf16 on CPUs with
    AVX512_BF16 or AMX, and the outputs would no longer match the reference."""
    parameters = config.get("parameters", {})
    # no thread pinning: each instance is a stub process of its own and the
    # plugin, pinning as if it owned the machine, puts the single-thread
    # instances of several models on the same core
    properties: dict = {"INFERENCE_PRECISION_HINT": "f32", "ENABLE_CPU_PINNING": False}
    for key, convert in OPENVINO_PROPERTIES.items():
        value = parameters.get(key, {}).get("string_value")
        if value:
            properties[key] = convert(value)
    precision = parameters.get("INFERENCE_PRECISION_HINT", {}).get("string_value")
    if precision:
        properties["INFERENCE_PRECISION_HINT"] = precision
    return properties


class OpenVinoSession:
    """An OpenVINO CompiledModel configured as Triton's native openvino backend
    would be. The network keeps its dynamic dimensions, so every batch size up
    to max_batch_size runs as it comes: `ENABLE_BATCH_PADDING` (which the
    native backend needs for partial batches of a static-batch network) gives
    the same outputs here without the padding."""

    engine = "openvino"

    def __init__(self, context: ModelContext):
        import openvino as ov  # here: a stub loads the one engine its model runs

        if context.instance_kind.upper().endswith("GPU"):
            raise ValueError(f"model '{context.name}': the openvino backend serves KIND_CPU instances only")
        core = ov.Core()
        network = core.read_model(model_path(context))
        self.properties = openvino_properties(context.config)
        self.compiled = core.compile_model(network, "CPU", self.properties)
        self.request = self.compiled.create_infer_request()
        self.input_names = {name for port in self.compiled.inputs for name in port.get_names()}
        self.output_names = {name for port in self.compiled.outputs for name in port.get_names()}

    @property
    def providers(self) -> list[str]:
        return ["CPU"]

    def run(self, outputs: Sequence[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        # shared outputs, then a copy of the requested ones only: an output
        # nobody asked for (the recogniser's full softmax) is never copied
        results = self.request.infer(feeds, share_outputs=True)
        return [np.array(results[name], copy=True) for name in outputs]


def check_tensors(context: ModelContext, engine) -> None:
    """Every tensor of the config exists in the engine's graph."""
    missing = [s.name for s in context.inputs() if s.name not in engine.input_names]
    missing += [s.name for s in context.outputs() if s.name not in engine.output_names]
    if missing:
        raise ValueError(f"model '{context.name}': tensors {missing} are in config.pbtxt but not in {model_path(context)}")


class NetworkModel:
    """The batch function of a network model over one engine: with
    batching, the requests of one shape stacked into one engine run;
    without, one run per request."""

    def __init__(self, context: ModelContext, engine):
        check_tensors(context, engine)
        self.name = context.name
        self.outputs: list[TensorSpec] = context.outputs()
        self.engine = engine
        self.answer = grouped_by_shape(stacked(self.run)) if context.max_batch_size > 0 else per_item(self.run)

    def run(self, tensors: RequestTensors) -> dict[str, np.ndarray]:
        """One engine run on `tensors` (a request, or stacked requests): the
        outputs it asks for, as the config's types."""
        feeds = {name: array for name, array in tensors.items() if array is not None}
        wanted = [spec for spec in self.outputs if tensors.wants(spec.name)]
        try:
            results = self.engine.run([spec.name for spec in wanted], feeds)
            return {spec.name: np.asarray(result, dtype=spec.numpy_type) for spec, result in zip(wanted, results)}
        except Exception as error:  # the engine raises its own types
            raise RequestError(f"model '{self.name}': {self.engine.engine} failed: {error}") from None

    def __call__(self, requests: Sequence[RequestTensors]) -> list[dict[str, np.ndarray] | Exception]:
        return self.answer(requests)


ENGINES: dict[str, Callable[[ModelContext], object]] = {"onnxruntime": OnnxRuntimeSession, "openvino": OpenVinoSession}


def make_network(engine: str) -> Callable[[ModelContext], NetworkModel]:
    """The factory of a Python-based framework backend (backends/<engine>/model.py)."""

    def make(context: ModelContext) -> NetworkModel:
        return NetworkModel(context, ENGINES[engine](context))

    make.__name__ = f"make_{engine}_network"
    return make
