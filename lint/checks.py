"""Checks for a Triton model repository; every finding names the file and field.

Configs are parsed against Triton's own model-config schema (the protobuf
that tritonclient ships), so a typo in a field name is a finding too.

Custom configurations: a model folder may hold `configs/<name>.pbtxt`, which
`tritonserver --model-config-name=<name>` serves instead of config.pbtxt
(models without that file keep config.pbtxt). Each one is checked like
config.pbtxt (syntax, name, the file its backend/platform needs, batching
convention, ensemble wiring, ONNX graph) and must be a drop-in replacement:
the same input and output names and data types as config.pbtxt, and the same
batch axis, since ensembles and clients are written against config.pbtxt."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import onnx
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from lint import pbtxt
from lint.engine_configs import ENGINES, PRECISION_VARIANTS, engine_config, precision_config

# Python-based backends of this repository and the file their version folder holds.
BACKEND_FILES = {
    "python": "model.py",
    "onnxruntime": "model.onnx",
    "openvino": "model.xml",
    "tensorrt": "model.plan",
    "pytorch": "model.pt",
}
PLATFORM_FILES = {
    "onnxruntime_onnx": "model.onnx",
    "tensorrt_plan": "model.plan",
    "pytorch_libtorch": "model.pt",
}

# onnx TensorProto element types -> Triton data types
ONNX_TO_TRITON = {
    1: "TYPE_FP32",
    2: "TYPE_UINT8",
    3: "TYPE_INT8",
    4: "TYPE_UINT16",
    5: "TYPE_INT16",
    6: "TYPE_INT32",
    7: "TYPE_INT64",
    8: "TYPE_STRING",
    9: "TYPE_BOOL",
    10: "TYPE_FP16",
    11: "TYPE_FP64",
    12: "TYPE_UINT32",
    13: "TYPE_UINT64",
    16: "TYPE_BF16",
}


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.field}: {self.message}"


def dtype_name(value: int) -> str:
    return mc.DataType.Name(value)


CUSTOM_CONFIG_DIR = "configs"


@dataclass
class ModelEntry:
    """One config of a model folder: config.pbtxt, or the custom
    configuration `configs/<custom_name>.pbtxt` (then `custom_name` is set)."""

    folder: Path
    config: mc.ModelConfig
    custom_name: str | None = None
    custom: dict[str, "ModelEntry"] = field(default_factory=dict)
    """config.pbtxt's entry only: its custom configurations by name."""

    @property
    def config_path(self) -> str:
        if self.custom_name is not None:
            return str(self.folder / CUSTOM_CONFIG_DIR / f"{self.custom_name}.pbtxt")
        return str(self.folder / "config.pbtxt")

    def inputs(self) -> dict[str, mc.ModelInput]:
        return {t.name: t for t in self.config.input}

    def outputs(self) -> dict[str, mc.ModelOutput]:
        return {t.name: t for t in self.config.output}

    @property
    def is_ensemble(self) -> bool:
        return self.config.platform == "ensemble"

    def version_dirs(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_dir() and p.name.isdigit())

    def model_file(self) -> str | None:
        if self.config.default_model_filename:
            return self.config.default_model_filename
        if self.config.backend:
            return BACKEND_FILES.get(self.config.backend)
        return PLATFORM_FILES.get(self.config.platform)


def parse_config(path: Path) -> tuple[mc.ModelConfig | None, Finding | None]:
    try:
        return pbtxt.parse(path.read_text()), None
    except text_format.ParseError as error:
        return None, Finding(str(path), "syntax", str(error))


def custom_config_paths(folder: Path) -> list[Path]:
    """`<model>/configs/*.pbtxt`, sorted (what --model-config-name can select)."""
    configs = folder / CUSTOM_CONFIG_DIR
    if not configs.is_dir():
        return []
    return sorted(p for p in configs.iterdir() if p.suffix == ".pbtxt" and p.is_file())


def load_custom_configs(folder: Path) -> tuple[dict[str, ModelEntry], list[Finding]]:
    custom, findings = {}, []
    for path in custom_config_paths(folder):
        config, problem = parse_config(path)
        if problem:
            findings.append(problem)
            continue
        custom[path.stem] = ModelEntry(folder, config, custom_name=path.stem)
    return custom, findings


def load_repository(root: Path) -> tuple[dict[str, ModelEntry], list[Finding]]:
    """config.pbtxt of every model folder, with its custom configurations
    attached (`entry.custom`). Custom configurations of a folder whose
    config.pbtxt is missing or broken are only checked for syntax."""
    models, findings = {}, []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(".")):
        custom, problems = load_custom_configs(folder)
        findings += problems
        config_path = folder / "config.pbtxt"
        if not config_path.exists():
            findings.append(Finding(str(config_path), "file", "model folder has no config.pbtxt"))
            continue
        config, problem = parse_config(config_path)
        if problem:
            findings.append(problem)
            continue
        models[folder.name] = ModelEntry(folder, config, custom=custom)
    return models, findings


def check_basics(entry: ModelEntry) -> list[Finding]:
    path, cfg, found = entry.config_path, entry.config, []
    if cfg.name != entry.folder.name:
        found.append(Finding(path, "name", f"'{cfg.name}' does not match the folder name '{entry.folder.name}'"))
    if not cfg.backend and not cfg.platform:
        found.append(Finding(path, "backend", "neither backend nor platform is set"))
    for section, tensors in (("input", cfg.input), ("output", cfg.output)):
        seen = set()
        for tensor in tensors:
            if tensor.name in seen:
                found.append(Finding(path, f"{section}.name", f"'{tensor.name}' is declared twice"))
            seen.add(tensor.name)
            if tensor.data_type == mc.TYPE_INVALID:
                found.append(Finding(path, f"{section}[{tensor.name}].data_type", "missing data_type"))
    versions = entry.version_dirs()
    if not versions and entry.custom_name is None:  # a folder matter: reported once, on config.pbtxt
        found.append(Finding(path, "version", f"no numeric version folder (e.g. {entry.folder.name}/1/)"))
    model_file = None if entry.is_ensemble else entry.model_file()
    for version in versions:
        if model_file and not (version / model_file).exists():
            hint = " (run `make export`)" if model_file != "model.py" else ""
            found.append(Finding(path, "backend", f"{version.name}/{model_file} is missing{hint}"))
    return found


CALLED_BY = "called_by"


def callers(entry: ModelEntry) -> list[str]:
    """The models named in the `called_by` parameter of an internal model
    (one that only the repository's own ensembles and BLS models send to)."""
    if CALLED_BY not in entry.config.parameters:
        return []
    return [name.strip() for name in entry.config.parameters[CALLED_BY].string_value.split(",") if name.strip()]


def check_batching_convention(entry: ModelEntry, models: dict[str, ModelEntry]) -> list[Finding]:
    """Every batching model declares dynamic batching with a bounded queue,
    so an overloaded model rejects at once instead of queueing without limit;
    an internal model (`called_by`) is bounded by its callers instead."""
    cfg, path = entry.config, entry.config_path
    if entry.is_ensemble:
        if cfg.HasField("dynamic_batching"):
            found = [Finding(path, "dynamic_batching", "ensembles cannot batch; batch in the composing models")]
            return found
        return []
    if callers(entry):
        return check_internal(entry, models)
    if cfg.max_batch_size <= 0:
        return []
    if not cfg.HasField("dynamic_batching"):
        return [Finding(path, "dynamic_batching", "max_batch_size > 0 but no dynamic_batching block")]
    policy = cfg.dynamic_batching.default_queue_policy
    if policy.max_queue_size <= 0:
        return [Finding(path, "dynamic_batching.default_queue_policy.max_queue_size", "queue must be bounded (> 0)")]
    return []


def ensembles_running(model: str, models: dict[str, ModelEntry]) -> set[str]:
    """The ensembles that have `model` as a step."""
    return {
        name for name, other in models.items() if other.is_ensemble and any(step.model_name == model for step in other.config.ensemble_scheduling.step)
    }


def bounded_upstream(model: ModelEntry, models: dict[str, ModelEntry]) -> bool:
    """What `model` is sent is bounded: an ensemble or its step (bounded by
    the ensemble's entry stage), an internal model, or a bounded queue."""
    if model.is_ensemble or callers(model) or model.config.dynamic_batching.default_queue_policy.max_queue_size > 0:
        return True
    return bool(ensembles_running(model.folder.name, models))


def check_internal(entry: ModelEntry, models: dict[str, ModelEntry]) -> list[Finding]:
    """An internal model keeps no queue policy: any size, timeout or override
    turns Triton's payload prefetching off, and without it a batch queued
    while every instance runs can wait ~500 ms for a wake-up
    (docs/conventions.md, "Batcher wake-ups"). Its callers exist, every ensemble that runs it as a
    step is named, and each caller is bounded (`bounded_upstream`)."""
    cfg, path = entry.config, entry.config_path
    field_name = f"parameters.{CALLED_BY}"
    found = []
    if cfg.HasField("dynamic_batching") and (
        cfg.dynamic_batching.HasField("default_queue_policy") or cfg.dynamic_batching.priority_levels
    ):
        found.append(
            Finding(path, "dynamic_batching.default_queue_policy", "an internal model (called_by) keeps no queue policy: it turns Triton's payload prefetching off")
        )
    named = callers(entry)
    for name in named:
        caller = models.get(name)
        if caller is None:
            found.append(Finding(path, field_name, f"'{name}' is no model of this repository"))
        elif not bounded_upstream(caller, models):
            found.append(Finding(path, field_name, f"caller '{name}' has no bounded queue and is no ensemble's step, so nothing bounds this one"))
    for name in sorted(ensembles_running(entry.folder.name, models) - set(named)):
        found.append(Finding(path, field_name, f"ensemble '{name}' runs it as a step but is not named"))
    return found


def entry_points(models: dict[str, ModelEntry]) -> set[str]:
    """The models a request from outside reaches first: every non-ensemble
    model that is no ensemble's step (called by clients or by BLS, which a
    config cannot show), and the steps that read an outside ensemble's
    inputs (the first stage of a pipeline)."""
    steps = {
        step.model_name: entry for entry in models.values() if entry.is_ensemble for step in entry.config.ensemble_scheduling.step
    }
    found = {name for name, entry in models.items() if not entry.is_ensemble and name not in steps and not callers(entry)}
    for name, entry in models.items():
        if not entry.is_ensemble or name in steps:
            continue
        inputs = set(entry.inputs())
        for step in entry.config.ensemble_scheduling.step:
            if step.model_name in models and not models[step.model_name].is_ensemble and inputs & set(step.input_map.values()):
                found.add(step.model_name)
    return found


def check_timeouts(entry: ModelEntry, entries: set[str]) -> list[Finding]:
    """A queue timeout fails the request (REJECT: DELAY would keep it
    waiting), and every entry point has one, so no request waits without
    limit for a saturated model: a queue policy with max_queue_size and
    default_timeout_microseconds (max_batch_size 0 models too)."""
    cfg, path = entry.config, entry.config_path
    policy = cfg.dynamic_batching.default_queue_policy
    field_name = "dynamic_batching.default_queue_policy"
    if policy.default_timeout_microseconds > 0 and policy.timeout_action != mc.ModelQueuePolicy.REJECT:
        return [Finding(path, f"{field_name}.timeout_action", "a timed-out request must be refused: use REJECT")]
    if entry.is_ensemble or entry.folder.name not in entries:
        return []
    if not cfg.HasField("dynamic_batching"):
        return [Finding(path, "dynamic_batching", "entry point without a queue policy: add dynamic_batching with default_queue_policy")]
    found = []
    if policy.max_queue_size <= 0 and cfg.max_batch_size <= 0:  # batching models get this finding from the convention check
        found.append(Finding(path, f"{field_name}.max_queue_size", "queue must be bounded (> 0)"))
    if policy.default_timeout_microseconds <= 0:
        found.append(Finding(path, f"{field_name}.default_timeout_microseconds", "entry point needs a queue timeout (> 0, with REJECT)"))
    return found


def _tensor_type(models: dict[str, ModelEntry], model: str, name: str, section: str):
    tensors = models[model].inputs() if section == "input" else models[model].outputs()
    return tensors[name].data_type if name in tensors else None


def check_ensemble(entry: ModelEntry, models: dict[str, ModelEntry]) -> list[Finding]:
    if not entry.is_ensemble:
        return []
    cfg, path, found = entry.config, entry.config_path, []
    if not cfg.HasField("ensemble_scheduling") or not cfg.ensemble_scheduling.step:
        return [Finding(path, "ensemble_scheduling", "ensemble has no steps")]
    # tensor name -> (data type or None when unknown, who produced it)
    available = {t.name: (t.data_type, "ensemble input") for t in cfg.input}
    for index, step in enumerate(cfg.ensemble_scheduling.step):
        where = f"ensemble_scheduling.step[{index}]"
        if step.model_name not in models:
            found.append(Finding(path, f"{where}.model_name", f"model '{step.model_name}' is not in the repository"))
            for value in step.output_map.values():
                available.setdefault(value, (None, step.model_name))
            continue
        target = models[step.model_name]
        for key, value in step.input_map.items():
            want = _tensor_type(models, step.model_name, key, "input")
            if want is None:
                found.append(Finding(path, f"{where}.input_map[{key}]", f"'{key}' is not an input of '{step.model_name}'"))
            if value not in available:
                found.append(
                    Finding(path, f"{where}.input_map[{key}]", f"'{value}' is neither an ensemble input nor an earlier step's output")
                )
            elif want is not None and available[value][0] not in (None, want):
                found.append(
                    Finding(
                        path,
                        f"{where}.input_map[{key}]",
                        f"'{value}' is {dtype_name(available[value][0])} but '{step.model_name}' expects {dtype_name(want)}",
                    )
                )
        for name, tensor in target.inputs().items():
            if name not in step.input_map and not tensor.optional:
                found.append(Finding(path, f"{where}.input_map", f"required input '{name}' of '{step.model_name}' is not mapped"))
        for key, value in step.output_map.items():
            produced = _tensor_type(models, step.model_name, key, "output")
            if produced is None:
                found.append(Finding(path, f"{where}.output_map[{key}]", f"'{key}' is not an output of '{step.model_name}'"))
            if value in available:
                found.append(
                    Finding(path, f"{where}.output_map[{key}]", f"tensor '{value}' is already produced by {available[value][1]}")
                )
                continue
            available[value] = (produced, step.model_name)
    for output in cfg.output:
        if output.name not in available:
            found.append(Finding(path, f"output[{output.name}]", "no step produces this ensemble output"))
        elif available[output.name][0] not in (None, output.data_type):
            found.append(
                Finding(
                    path,
                    f"output[{output.name}].data_type",
                    f"declared {dtype_name(output.data_type)} but the step produces {dtype_name(available[output.name][0])}",
                )
            )
    return found


def _onnx_dims(value_info) -> list[int | None]:
    dims = []
    for dim in value_info.type.tensor_type.shape.dim:
        # a symbolic name, or a negative/zero value some exporters write, is dynamic
        dims.append(dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None)
    return dims


def check_onnx(entry: ModelEntry) -> list[Finding]:
    cfg = entry.config
    is_onnx = cfg.backend == "onnxruntime" or cfg.platform == "onnxruntime_onnx" or (cfg.backend == "openvino" and (entry.model_file() or "").endswith(".onnx"))
    if not is_onnx:
        return []
    found, path = [], entry.config_path
    for version in entry.version_dirs():
        model_path = version / (entry.model_file() or "model.onnx")
        if not model_path.exists():
            continue  # reported by check_basics
        try:
            graph = onnx.load(str(model_path), load_external_data=False).graph
        except Exception as error:  # not an ONNX protobuf (truncated, a placeholder file)
            found.append(Finding(path, "backend", f"{version.name}/{model_path.name} cannot be read as ONNX: {type(error).__name__}: {error}"))
            continue
        initializers = {init.name for init in graph.initializer}
        for section, declared, graph_tensors in (
            ("input", cfg.input, [t for t in graph.input if t.name not in initializers]),
            ("output", cfg.output, list(graph.output)),
        ):
            by_name = {t.name: t for t in graph_tensors}
            for tensor in declared:
                field = f"{section}[{tensor.name}]"
                if tensor.name not in by_name:
                    found.append(Finding(path, f"{field}.name", f"not a graph {section} of {model_path.name} (has {sorted(by_name)})"))
                    continue
                graph_tensor = by_name[tensor.name]
                graph_type = ONNX_TO_TRITON.get(graph_tensor.type.tensor_type.elem_type, "unknown")
                if dtype_name(tensor.data_type) != graph_type:
                    found.append(Finding(path, f"{field}.data_type", f"{dtype_name(tensor.data_type)} but the graph has {graph_type}"))
                graph_dims = _onnx_dims(graph_tensor)
                config_dims = ([-1] if cfg.max_batch_size > 0 else []) + list(tensor.dims)
                if len(graph_dims) != len(config_dims):
                    found.append(
                        Finding(path, f"{field}.dims", f"rank {len(config_dims)} (with batch) but the graph has rank {len(graph_dims)}")
                    )
                    continue
                for axis, (want, have) in enumerate(zip(config_dims, graph_dims)):
                    if want >= 0 and have is not None and want != have:
                        found.append(Finding(path, f"{field}.dims", f"axis {axis} is {want} but the graph has {have}"))
                if cfg.max_batch_size > 0 and graph_dims and graph_dims[0] not in (None, 0):
                    found.append(Finding(path, f"{field}.dims", f"max_batch_size > 0 but the graph's first axis is fixed at {graph_dims[0]}"))
    return found


def check_custom_interface(entry: ModelEntry, base: ModelEntry) -> list[Finding]:
    """A custom configuration must be a drop-in replacement for config.pbtxt:
    the same input and output names with the same data types, and the same
    batch axis (max_batch_size 0 or not), because ensembles (checked against
    config.pbtxt) and clients do not know which of the two the server loaded."""
    cfg, path, found = entry.config, entry.config_path, []
    base_name = Path(base.config_path).name
    for section, mine, theirs in (("input", entry.inputs(), base.inputs()), ("output", entry.outputs(), base.outputs())):
        for name, tensor in mine.items():
            if name not in theirs:
                found.append(
                    Finding(path, f"{section}[{name}].name", f"not an {section} of {base_name} (has {sorted(theirs)}); a custom config must be a drop-in replacement")
                )
            elif tensor.data_type != theirs[name].data_type:
                found.append(
                    Finding(
                        path,
                        f"{section}[{name}].data_type",
                        f"{dtype_name(tensor.data_type)} but {base_name} has {dtype_name(theirs[name].data_type)}",
                    )
                )
        for name in theirs:
            if name not in mine:
                found.append(Finding(path, section, f"'{name}' of {base_name} is not declared; a custom config must be a drop-in replacement"))
    if (cfg.max_batch_size > 0) != (base.config.max_batch_size > 0):
        found.append(
            Finding(
                path,
                "max_batch_size",
                f"{cfg.max_batch_size} but {base_name} has {base.config.max_batch_size}: "
                "one has a batch axis and the other not, so request shapes differ",
            )
        )
    return found


def check_openvino(entry: ModelEntry) -> list[Finding]:
    """What Triton's native openvino backend needs of a config: CPU instances,
    and batch padding where the network batches (it refuses a partial batch
    of a network compiled for max_batch_size otherwise)."""
    cfg, path, found = entry.config, entry.config_path, []
    if cfg.backend != "openvino":
        return []
    if any(group.kind not in (mc.ModelInstanceGroup.KIND_CPU, mc.ModelInstanceGroup.KIND_AUTO) for group in cfg.instance_group):
        found.append(Finding(path, "instance_group", "the openvino backend serves KIND_CPU instances only"))
    padding = cfg.parameters["ENABLE_BATCH_PADDING"].string_value if "ENABLE_BATCH_PADDING" in cfg.parameters else ""
    if cfg.max_batch_size > 0 and padding.upper() != "YES":
        found.append(Finding(path, "parameters.ENABLE_BATCH_PADDING", 'max_batch_size > 0 needs "YES": the native backend fails partial batches otherwise'))
    return found


def check_engine_config(entry: ModelEntry, base: ModelEntry) -> list[Finding]:
    """configs/onnxruntime.pbtxt, configs/openvino.pbtxt and the precision
    configs are derived from config.pbtxt (lint/engine_configs.py): one that
    differs has drifted."""
    variants = PRECISION_VARIANTS.get(base.folder.name, {})
    if entry.custom_name not in ENGINES and entry.custom_name not in variants:
        return []
    path = Path(entry.config_path)
    text = (base.folder / "config.pbtxt").read_text()
    try:
        if entry.custom_name in ENGINES:
            expected = engine_config(text, entry.custom_name)
        else:
            expected = precision_config(text, variants[entry.custom_name], entry.custom_name)
    except ValueError as error:
        return [Finding(str(path), "backend", f"an engine config beside a config.pbtxt that is not an ONNX network: {error}")]
    if path.read_text() != expected:
        return [Finding(str(path), "engine", "differs from what config.pbtxt gives; run `python -m lint.engine_configs`")]
    return []


def check_config(entry: ModelEntry, models: dict[str, ModelEntry], entries: set[str] = frozenset()) -> list[Finding]:
    """The checks every config file gets, config.pbtxt or custom."""
    found = check_basics(entry) + check_batching_convention(entry, models) + check_timeouts(entry, entries)
    return found + check_ensemble(entry, models) + check_onnx(entry) + check_openvino(entry)


def lint_repository(root: Path) -> list[Finding]:
    models, findings = load_repository(Path(root))
    entries = entry_points(models)
    for entry in models.values():
        findings += check_config(entry, models, entries)
        for custom in entry.custom.values():
            findings += check_config(custom, models, entries)
            findings += check_custom_interface(custom, entry)
            findings += check_engine_config(custom, entry)
    return sorted(findings)
