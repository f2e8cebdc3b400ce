"""Format priority for exported networks (Towhee's `format_priority`, done
the Triton way): `--format tensorrt,onnx` tries each format in turn and keeps
the first that builds and passes its check.

- `onnx`: `<model>/1/model.onnx` served by `config.pbtxt` (backend
  "onnxruntime": the native backend in the official container, the
  Python-based stand-in on a CPU machine).
- `tensorrt`: `<model>/1/model.plan`, an engine built from that ONNX file with
  one optimisation profile (min/opt/max shapes) and optional FP16, plus
  `<model>/configs/tensorrt.pbtxt` (platform "tensorrt_plan", GPU instances),
  Triton's custom-configuration file: `tritonserver --model-config-name=tensorrt`
  (`make serve MODEL_CONFIG_NAME=tensorrt`) serves the plans, a plain start
  the ONNX files. The ONNX file stays either way, so one repository serves a
  CPU and a GPU machine.

TensorRT needs the `tensorrt` Python package and an NVIDIA GPU; without them
the attempt fails with a message that says which is missing, and the next
format is used."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from export.common.tensorrt_config import tensorrt_config

FORMATS = ("tensorrt", "onnx")
TENSORRT_CONFIG_NAME = "tensorrt"
PLAN_FILENAME = "model.plan"


class FormatUnavailable(RuntimeError):
    """This format cannot be built here; the message says why."""


def parse_formats(text: str) -> list[str]:
    """'tensorrt,onnx' -> ['tensorrt', 'onnx'] (order kept, unknown names refused)."""
    formats = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"--format takes a comma-separated priority list of {', '.join(FORMATS)}; got {text!r}")
    return list(dict.fromkeys(formats))


def gpu_names() -> list[str]:
    """NVIDIA GPUs that `nvidia-smi -L` lists (none when it is missing or fails)."""
    binary = shutil.which("nvidia-smi")
    if not binary:
        return []
    try:
        done = subprocess.run([binary, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.startswith("GPU ")] if done.returncode == 0 else []


def tensorrt_missing() -> str | None:
    """Why a TensorRT plan cannot be built on this machine, or None."""
    try:  # optional: only where a GPU is (never installed on the CPU machines)
        import tensorrt  # noqa: F401
    except ImportError:
        return "the tensorrt Python package is not installed (pip install tensorrt on a machine with an NVIDIA GPU)"
    if not gpu_names():
        return "no NVIDIA GPU is visible (nvidia-smi lists none)"
    return None


@dataclass(frozen=True)
class Profile:
    """TensorRT optimisation profile of one input: min / opt / max shapes (with the batch axis)."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


def build_tensorrt_plan(onnx_path: Path, plan_path: Path, profiles: dict[str, Profile], fp16: bool = False, workspace_gib: float = 4.0) -> None:
    """Parse the ONNX file, build a serialized engine with one profile, write it."""
    reason = tensorrt_missing()
    if reason:
        raise FormatUnavailable(reason)
    import tensorrt as trt  # there: checked just above

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # implicit in TensorRT >= 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise FormatUnavailable(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if fp16:
        if not builder.platform_has_fast_fp16:
            raise FormatUnavailable("--fp16 asked for, but this GPU has no fast FP16")
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, shapes in profiles.items():
        profile.set_shape(name, shapes.min, shapes.opt, shapes.max)
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise FormatUnavailable("TensorRT could not build an engine (see its log above)")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_bytes(bytes(engine))


def run_tensorrt_plan(plan_path: Path, feeds: dict, outputs: Sequence[str]) -> dict:
    """Run a plan once on numpy inputs (the export's check), through torch's
    CUDA tensors for the device memory."""
    # optional, as in tensorrt_missing: a plan exists only where a GPU is
    import tensorrt as trt
    import torch  # likewise: only for a plan's check, on a GPU machine

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(plan_path.read_bytes())
    context = engine.create_execution_context()
    device_tensors = {}
    for name, array in feeds.items():
        device_tensors[name] = torch.from_numpy(np.ascontiguousarray(array)).cuda()
        context.set_input_shape(name, tuple(array.shape))
    for name in outputs:
        shape = tuple(context.get_tensor_shape(name))
        dtype = torch.from_numpy(np.zeros(0, dtype=trt.nptype(engine.get_tensor_dtype(name)))).dtype
        device_tensors[name] = torch.empty(shape, dtype=dtype, device="cuda")
    for name, tensor in device_tensors.items():
        context.set_tensor_address(name, tensor.data_ptr())
    stream = torch.cuda.Stream()
    if not context.execute_async_v3(stream.cuda_stream):
        raise RuntimeError("TensorRT execution failed")
    stream.synchronize()
    return {name: device_tensors[name].cpu().numpy() for name in outputs}


@dataclass
class Placement:
    """What an export put where."""

    format: str
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def place_network(
    onnx_path: Path,
    model_dir: Path,
    formats: Sequence[str],
    profiles: dict[str, Profile],
    fp16: bool = False,
    check_plan: Callable[[Path], None] | None = None,
    log: Callable[[str], None] = print,
) -> Placement:
    """Try `formats` in order for the network of `model_dir` (whose
    `1/model.onnx` is already written and checked). TensorRT: build the plan,
    run `check_plan(plan_path)` (raises on a mismatch), write the tensorrt
    custom config. A failed attempt leaves no stale plan or config behind."""
    plan_path = model_dir / "1" / PLAN_FILENAME
    trt_config = model_dir / "configs" / f"{TENSORRT_CONFIG_NAME}.pbtxt"
    notes: list[str] = []

    def remove_tensorrt_files() -> None:
        for stale in (plan_path, trt_config):
            if stale.exists():
                stale.unlink()
                notes.append(f"removed {stale} (TensorRT was not chosen this time)")

    for fmt in formats:
        if fmt == "onnx":
            remove_tensorrt_files()
            log(f"{model_dir.name}: serving format onnx ({onnx_path})")
            return Placement("onnx", [onnx_path], notes)
        try:
            build_tensorrt_plan(onnx_path, plan_path, profiles, fp16=fp16)
            if check_plan is not None:
                check_plan(plan_path)
        except Exception as error:  # FormatUnavailable, a TensorRT error or a failed check
            remove_tensorrt_files()
            message = f"{model_dir.name}: TensorRT not used: {error}"
            log(message + (" -> falling back to " + formats[formats.index(fmt) + 1] if fmt != formats[-1] else ""))
            notes.append(message)
            continue
        trt_config.parent.mkdir(parents=True, exist_ok=True)
        trt_config.write_text(tensorrt_config((model_dir / "config.pbtxt").read_text(), max(p.max[0] for p in profiles.values())))
        log(
            f"{model_dir.name}: serving format tensorrt ({plan_path}); "
            f"serve it with tritonserver --model-config-name={TENSORRT_CONFIG_NAME}"
        )
        return Placement("tensorrt", [plan_path, trt_config, onnx_path], notes)
    raise RuntimeError(f"{model_dir.name}: no format of {list(formats)} could be built: {'; '.join(notes)}")
