"""The other CPU engine one switch away: `configs/onnxruntime.pbtxt` and
`configs/openvino.pbtxt` of every ONNX network, derived from its
config.pbtxt (which holds the engine chosen by measurement, see
perf/results/engines.md).

A model served by one engine gets a custom configuration for the other, so
`tritonserver --model-config-name=onnxruntime` (or `openvino`) serves every
network with that engine; config.pbtxt stays the default. The files are
committed (the official container needs no export step to find them) and
the linter fails when one differs from what this module derives, so they
never drift. `python -m lint.engine_configs` rewrites them.

Threads carry over: ONNX Runtime's `intra_op_thread_count` is OpenVINO's
`INFERENCE_NUM_THREADS` and back; OpenVINO runs one stream with the latency
hint (one request batch at a time per instance, as an ONNX Runtime session
does here), and pads partial batches where the native backend needs it.

Precision is one switch away the same way, for the networks in
`PRECISION_VARIANTS`: each variant name (a --model-config-name) runs each of
its networks on OpenVINO in one precision: "bf16" with the bf16 inference
precision (on CPUs with AVX512_BF16 or AMX; elsewhere the plugin falls back
to f32), "int8" on its post-training int8 quantisation (`model_int8.onnx`,
written by the export; what is left in float at `INT8_FLOAT_PRECISION`).
f32 (config.pbtxt) stays the default; a network a variant leaves out keeps
it. docs/ocr.md says what each OCR variant costs in accuracy and gains."""

from __future__ import annotations

import sys
from pathlib import Path

from lint import pbtxt
from runtime.paths import MODEL_REPOSITORY

ENGINES = ("onnxruntime", "openvino")
HEADER = (
    "# Written by `python -m lint.engine_configs` from config.pbtxt: the same network on\n"
    "# the {engine} engine. Served with tritonserver --model-config-name={engine}.\n"
)
PRECISION_HEADER = (
    "# Written by `python -m lint.engine_configs` from config.pbtxt: the same network in\n"
    "# {precision} on OpenVINO. Served with tritonserver --model-config-name={variant}.\n"
)
PRECISION_VARIANTS = {
    "ocr_det": {"bf16": "bf16", "int8": "int8", "fast": "int8"},
    "ocr_rec": {"bf16": "bf16", "int8": "int8", "fast": "bf16"},
    "ocr_cls": {"bf16": "bf16"},
}
"""Network -> {variant (config name): the precision it runs in that variant}.
"fast" is the fastest mix whose error rate stays near f32's: the bf16
detector moves boxes, the int8 one does not; the bf16 recogniser is faster
and more accurate than the int8 one on CPUs with bf16 (docs/ocr-precision.md)."""
VARIANTS = ("bf16", "int8", "fast")
PRECISIONS = ("bf16", "int8")
INT8_MODEL_FILE = "model_int8.onnx"
INT8_FLOAT_PRECISION = "f32"
THREADS = {"onnxruntime": "intra_op_thread_count", "openvino": "INFERENCE_NUM_THREADS"}
ENGINE_PARAMETERS = {
    "onnxruntime": ("intra_op_thread_count", "inter_op_thread_count", "session.intra_op.allow_spinning"),
    "openvino": ("INFERENCE_NUM_THREADS", "PERFORMANCE_HINT", "NUM_STREAMS", "ENABLE_BATCH_PADDING", "INFERENCE_PRECISION_HINT"),
}


def engine_of(config) -> str | None:
    if config.backend in ENGINES:
        return config.backend
    return "onnxruntime" if config.platform == "onnxruntime_onnx" else None


def engine_config(config_text: str, engine: str) -> str:
    """config.pbtxt of an ONNX network -> the same network on `engine`."""
    config = pbtxt.parse(config_text)
    source = engine_of(config)
    if source is None:
        raise ValueError(f"{config.name}: not an ONNX network (backend {config.backend!r}, platform {config.platform!r})")
    threads = config.parameters[THREADS[source]].string_value if THREADS[source] in config.parameters else ""
    for key in ENGINE_PARAMETERS[source]:
        if key in config.parameters:
            del config.parameters[key]
    config.ClearField("platform")
    config.backend = engine
    if engine == "openvino":
        config.default_model_filename = "model.onnx"  # the native backend's default is model.xml
        settings = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
        if threads:
            settings["INFERENCE_NUM_THREADS"] = threads
        if config.max_batch_size > 0:
            settings["ENABLE_BATCH_PADDING"] = "YES"
    else:
        config.ClearField("default_model_filename")
        settings = {"session.intra_op.allow_spinning": "0"}
        if threads:
            settings["intra_op_thread_count"] = threads
    for key, value in settings.items():
        config.parameters[key].string_value = value
    return HEADER.format(engine=engine) + pbtxt.to_text(config)


def precision_config(config_text: str, precision: str, variant: str | None = None) -> str:
    """config.pbtxt of an ONNX network -> the same network in `precision` on
    OpenVINO, as served by --model-config-name=`variant` (default: the precision's name)."""
    config = pbtxt.parse(engine_config(config_text, "openvino"))
    if precision == "int8":
        config.default_model_filename = INT8_MODEL_FILE
        config.parameters["INFERENCE_PRECISION_HINT"].string_value = INT8_FLOAT_PRECISION
    elif precision == "bf16":
        config.parameters["INFERENCE_PRECISION_HINT"].string_value = "bf16"
    else:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    return PRECISION_HEADER.format(precision=precision, variant=variant or precision) + pbtxt.to_text(config)


def expected_configs(folder: Path) -> dict[Path, str]:
    """The engine and precision configs a model folder should hold (none for other models)."""
    config_path = folder / "config.pbtxt"
    if not config_path.exists():
        return {}
    text = config_path.read_text()
    source = engine_of(pbtxt.parse(text))
    if source is None:
        return {}
    expected = {folder / "configs" / f"{engine}.pbtxt": engine_config(text, engine) for engine in ENGINES if engine != source}
    for variant, precision in PRECISION_VARIANTS.get(folder.name, {}).items():
        expected[folder / "configs" / f"{variant}.pbtxt"] = precision_config(text, precision, variant)
    return expected


def write(repository: Path = MODEL_REPOSITORY) -> list[Path]:
    written = []
    for folder in sorted(p for p in repository.iterdir() if p.is_dir()):
        for derived in ENGINES + VARIANTS:  # an engine config named after the default engine would only confuse
            stale = folder / "configs" / f"{derived}.pbtxt"
            if stale.exists() and stale not in expected_configs(folder):
                stale.unlink()
        for path, text in expected_configs(folder).items():
            path.parent.mkdir(exist_ok=True)
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
                written.append(path)
    return written


if __name__ == "__main__":
    repository = Path(sys.argv[1]) if len(sys.argv) > 1 else MODEL_REPOSITORY
    for path in write(repository):
        print(f"wrote {path}")
