"""Which engine and how many threads for each ONNX network: measured in its
pipeline under load, and alone.

In the pipeline: for each pipeline, a linked copy of the models it needs is
served with every network of it set to one variant (engine, threads, ONNX
Runtime's intra-op spinning), and perf_analyzer drives the entry model at
concurrency 4 with real inputs; Triton's statistics give each network's
compute time per execution over that run. Alone: each network in one
process, one engine session at a time: the OCR networks on their real calls
for the text-dense document pages (ms per page), the others on a fixed input
(ms per call), OpenVINO also at bf16 (its default on CPUs with AVX512_BF16 or
AMX; not served, it changes the answers).

    make perf PERF_ARGS=engines     # writes perf/results/engines.md
    PERF_ENGINES_PIPELINES=ocr,orientation make perf PERF_ARGS=engines   # a subset

The winners are what config.pbtxt serves; the other engine is the custom
configuration `configs/<engine>.pbtxt` (lint/engine_configs.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from clients import triton_stats
from lint import pbtxt
from lint.engine_configs import engine_config, engine_of
from perf import stable_diffusion
from perf.harness import benchmark_server, picture_inputs, run_perf_analyzer, text_inputs
from perf.instance_sweep import linked_copy
from perf.report import Report, Table
from pipelines.ocr import models as ocr_models
from pipelines.serving.network import ENGINES
from pipelines.serving.python_model import ModelContext
from references.ocr import OfflineOCR
from runtime.paths import MODEL_REPOSITORY
from testsets.documents import pages as document_pages
from testsets.images import photo_samples
from testsets.sentences import varied_sentences

NEEDS_SERVER = False
CONCURRENCY = 4


@dataclass(frozen=True)
class Variant:
    engine: str
    threads: int
    spinning: bool = True  # ONNX Runtime's intra-op pool only
    precision: str = "f32"  # OpenVINO's inference precision only

    @property
    def label(self) -> str:
        spin = "" if self.engine != "onnxruntime" else (", spinning" if self.spinning else ", no spinning")
        precision = "" if self.precision == "f32" else f", {self.precision}"
        return f"{self.engine} {self.threads} thread{'s' if self.threads > 1 else ''}{spin}{precision}"


VARIANTS = [
    Variant("onnxruntime", 2, True),
    Variant("onnxruntime", 1, True),
    Variant("onnxruntime", 2, False),
    Variant("onnxruntime", 1, False),
    Variant("openvino", 2),
    Variant("openvino", 1),
]
# pipelines with one network: fewer variants (OpenVINO at one thread is in the alone table)
SHORT_VARIANTS = [Variant("onnxruntime", 2, True), Variant("onnxruntime", 1, True), Variant("onnxruntime", 2, False), Variant("openvino", 2)]


def variant_config(config_text: str, variant: Variant) -> str:
    text = config_text if engine_of(pbtxt.parse(config_text)) == variant.engine else engine_config(config_text, variant.engine)
    if variant.engine == "openvino":
        text = pbtxt.set_parameter(text, "INFERENCE_NUM_THREADS", str(variant.threads))
        return text if variant.precision == "f32" else pbtxt.set_parameter(text, "INFERENCE_PRECISION_HINT", variant.precision)
    text = pbtxt.set_parameter(text, "intra_op_thread_count", str(variant.threads))
    return pbtxt.set_parameter(text, "session.intra_op.allow_spinning", "1" if variant.spinning else "0")


def _document_inputs() -> Path:
    return picture_inputs([page.data for page in document_pages()], "engines-documents")


def _photo_inputs() -> Path:
    return picture_inputs([sample.data for sample in photo_samples()], "engines-photos")


def _sentence_inputs() -> Path:
    return text_inputs(varied_sentences(), "engines-texts")


def _prompt_inputs() -> Path:
    return stable_diffusion.inputs(20, 7.5, Path(tempfile.mkdtemp(prefix="perf-engines-prompts-")))


@dataclass(frozen=True)
class Pipeline:
    entry: str
    models: tuple[str, ...]  # everything the entry model calls, networks included
    networks: tuple[str, ...]
    inputs: Callable[[], Path]
    unit: str
    variants: tuple[Variant, ...] = tuple(VARIANTS)


PIPELINES = [
    Pipeline("ocr", ("image_decode", "ocr_det_pre", "ocr_det", "ocr_recognize", "ocr_cls", "ocr_rec", "ocr"), ("ocr_det", "ocr_cls", "ocr_rec"), _document_inputs, "pages"),
    Pipeline("orientation", ("image_decode", "orientation_preprocess", "orientation_classifier", "orientation"), ("orientation_classifier",), _photo_inputs, "images"),
    Pipeline("vit", ("image_decode", "vit_preprocess", "vit_model", "vit"), ("vit_model",), _photo_inputs, "images", tuple(SHORT_VARIANTS)),
    Pipeline("clip_image_embedding", ("image_decode", "clip_image_preprocess", "clip_image_encoder", "clip_image_embedding"), ("clip_image_encoder",), _photo_inputs, "images", tuple(SHORT_VARIANTS)),
    Pipeline("clip_text_embedding", ("clip_tokenizer", "clip_text_encoder", "clip_text_embedding"), ("clip_text_encoder",), _sentence_inputs, "texts", tuple(SHORT_VARIANTS)),
    Pipeline("text_embedding", ("text_tokenizer", "text_encoder", "text_pooling", "text_embedding"), ("text_encoder",), _sentence_inputs, "texts", tuple(SHORT_VARIANTS)),
    # the small default checkpoint, 20 steps, guidance 7.5
    Pipeline(
        "stable_diffusion", ("sd_text_encoder", "sd_unet", "sd_vae_decoder", "stable_diffusion"), ("sd_text_encoder", "sd_unet", "sd_vae_decoder"),
        _prompt_inputs, "images", tuple(SHORT_VARIANTS),
    ),
]


def serve_variant(pipeline: Pipeline, variant: Variant, scratch: Path) -> Path:
    """A repository of the pipeline's models, links to model_repository/ but
    for the networks' config.pbtxt, written for `variant`."""
    repository = scratch / f"{pipeline.entry}-{variant.engine}-{variant.threads}-{int(variant.spinning)}"
    for model in pipeline.models:
        linked_copy(MODEL_REPOSITORY / model, repository / model)
    for network in pipeline.networks:
        config = repository / network / "config.pbtxt"
        text = variant_config((MODEL_REPOSITORY / network / "config.pbtxt").read_text(), variant)
        config.unlink()
        config.write_text(text)
    return repository


def in_pipeline(pipeline: Pipeline, seconds: float) -> tuple[Table, list[str]]:
    data = pipeline.inputs()
    scratch = Path(tempfile.mkdtemp(prefix="perf-engines-"))
    rows, notes = [], []
    for variant in pipeline.variants:
        repository = serve_variant(pipeline, variant, scratch)
        with benchmark_server([repository]) as server:
            run_perf_analyzer(pipeline.entry, server.http_url, CONCURRENCY, data, request_count=2 * CONCURRENCY, label="warm-up")
            before = triton_stats.read_all(server.http_url, pipeline.networks)
            row = run_perf_analyzer(pipeline.entry, server.http_url, CONCURRENCY, data, measurement_ms=int(seconds * 1000), label=variant.label)
            after = triton_stats.read_all(server.http_url, pipeline.networks)
        rows.append(row)
        compute = []
        for network in pipeline.networks:
            used = after[network] - before[network]
            per_call = used.compute_ns / max(used.executions, 1) / 1e6
            compute.append(f"{network} {per_call:.1f} ms/execution ({used.inferences / max(used.executions, 1):.1f} items)")
        notes.append(f"- {pipeline.entry}, {variant.label}: {row.throughput:.2f} {pipeline.unit}/s, p50 {row.p50_ms:.0f} ms; " + ", ".join(compute))
        shutil.rmtree(repository)
    best = max(rows, key=lambda r: r.throughput)
    notes.append(f"- **{pipeline.entry}: best {best.system}** ({best.throughput:.2f} {pipeline.unit}/s)")
    title = f"{pipeline.entry} at concurrency {CONCURRENCY}, networks {', '.join(pipeline.networks)} on each variant"
    return Table(title, pipeline.unit, rows, reference=pipeline.variants[0].label), notes


# --------------------------------------------------------------- alone

# networks timed on a fixed input, ms per call: shapes as the pipelines send
# them (a text of ~16 / ~32 tokens, both halves of classifier-free guidance,
# the small default checkpoint's 4x32x32 latents and 77 x 32 text states);
# the dtypes are the config's
ALONE_SHAPES: dict[str, dict[str, tuple[int, ...]]] = {
    "orientation_classifier": {"x": (4, 3, 224, 224)},
    "vit_model": {"pixel_values": (1, 3, 224, 224)},
    "clip_image_encoder": {"pixel_values": (1, 3, 224, 224)},
    "clip_text_encoder": {"input_ids": (1, 16), "attention_mask": (1, 16)},
    "text_encoder": {"input_ids": (1, 32), "attention_mask": (1, 32), "token_type_ids": (1, 32)},
    "sd_text_encoder": {"input_ids": (2, 77)},
    "sd_unet": {"sample": (2, 4, 32, 32), "timestep": (2, 1), "encoder_hidden_states": (2, 77, 32)},
    "sd_vae_decoder": {"latent_sample": (1, 4, 32, 32)},
    "datatypes_onnx": {name: (1, 16) for name in ("x_fp32", "x_fp16", "x_int64", "x_int32", "x_uint8", "x_bool")},
}


def fixed_feed(name: str, shape: tuple[int, ...], dtype: np.dtype, rng: np.random.Generator) -> np.ndarray:
    """A valid input: masks all ones, token type ids zero, other ids within
    every tokenizer's vocabulary, timesteps in the schedule's range, floats
    uniform in [0, 1)."""
    if name.endswith("mask"):
        return np.ones(shape, dtype)
    if name == "token_type_ids":
        return np.zeros(shape, dtype)
    if name == "timestep":
        return rng.integers(0, 1000, shape).astype(dtype)
    if np.issubdtype(dtype, np.integer) or dtype == np.bool_:
        return rng.integers(0, 2 if dtype == np.bool_ else 100 if dtype == np.uint8 else 1000, shape).astype(dtype)
    return rng.random(shape).astype(dtype)


def fixed_feeds(network: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One call's inputs for `network`: ALONE_SHAPES' shapes, the config's dtypes."""
    served = {spec.name: spec for spec in network_context(network, Variant("onnxruntime", 1)).inputs()}
    if set(served) != set(ALONE_SHAPES[network]):
        raise ValueError(f"{network}: ALONE_SHAPES names {sorted(ALONE_SHAPES[network])}, the config {sorted(served)}")
    return {name: fixed_feed(name, shape, np.dtype(served[name].numpy_type), rng) for name, shape in ALONE_SHAPES[network].items()}


ALONE_VARIANTS = (
    Variant("onnxruntime", 1, False),
    Variant("onnxruntime", 2, False),
    Variant("openvino", 1),
    Variant("openvino", 2),
    Variant("openvino", 2, precision="bf16"),
)


def network_context(network: str, variant: Variant):
    text = variant_config((MODEL_REPOSITORY / network / "config.pbtxt").read_text(), variant)
    return ModelContext(config=pbtxt.as_json(pbtxt.parse(text)), model_dir=MODEL_REPOSITORY / network)


def document_calls() -> tuple[int, dict[str, list[dict[str, np.ndarray]]]]:
    """The OCR networks' real calls on the text-dense document pages, in the
    order the composition makes them (the detector's inputs, the classifier
    and recogniser groups): (pages, {network: [feeds, ...]})."""
    names = {
        "det": (ocr_models.DET_MODEL, ocr_models.DET_INPUT),
        "cls": (ocr_models.CLS_MODEL, ocr_models.CLS_INPUT),
        "rec": (ocr_models.REC_MODEL, ocr_models.REC_INPUT),
    }
    calls: dict[str, list] = {model: [] for model, _ in names.values()}
    reference = OfflineOCR()
    run = reference.run

    def recording(name: str, batch: np.ndarray) -> np.ndarray:
        model, input_name = names[name]
        calls[model].append({input_name: np.ascontiguousarray(batch, dtype=np.float32)})
        return run(name, batch)

    reference.run = recording
    documents = document_pages()
    for page in documents:
        reference(page.data)
    return len(documents), calls


def _ms_per_pass(engine, outputs: list[str], feeds_list: list[dict[str, np.ndarray]], seconds: float = 0.0) -> float:
    """Mean ms for one pass over `feeds_list`, repeated for at least `seconds`
    (one pass at least), after one untimed call (allocations, kernel choice)."""
    engine.run(outputs, feeds_list[0])
    passes, start = 0, time.perf_counter()
    while passes == 0 or time.perf_counter() - start < seconds:
        for feeds in feeds_list:
            engine.run(outputs, feeds)
        passes += 1
    return (time.perf_counter() - start) * 1000 / passes


def alone(seconds: float, networks: Sequence[str] = ()) -> str:
    """Per network (all, or those named) and variant: the OCR networks in ms
    per document page (their real calls), the others in ms per call on a
    fixed input, all their served outputs; one process, one engine at a
    time. A markdown table."""
    ocr_networks = {ocr_models.DET_MODEL, ocr_models.CLS_MODEL, ocr_models.REC_MODEL}
    pages, calls = document_calls() if not networks or ocr_networks & set(networks) else (0, {})
    calls = {network: feeds for network, feeds in calls.items() if not networks or network in networks}
    wanted = {
        ocr_models.DET_MODEL: [ocr_models.DET_OUTPUT],
        ocr_models.CLS_MODEL: [ocr_models.CLS_OUTPUT],
        ocr_models.REC_MODEL: [ocr_models.REC_INDICES, ocr_models.REC_SCORES],
    }
    rng = np.random.default_rng(0)
    fixed = {network: [fixed_feeds(network, rng)] for network in ALONE_SHAPES if not networks or network in networks}
    lines = [
        "| network | measured on | " + " | ".join(v.label for v in ALONE_VARIANTS) + " |",
        "|---|---|" + "---|" * len(ALONE_VARIANTS),
    ]
    for network in [*calls, *fixed]:
        cells = []
        for variant in ALONE_VARIANTS:
            context = network_context(network, variant)
            engine = ENGINES[variant.engine](context)
            if network in calls:
                ms = _ms_per_pass(engine, wanted[network], calls[network]) / pages
            else:
                ms = _ms_per_pass(engine, [spec.name for spec in context.outputs()], fixed[network], seconds)
            cells.append(f"{ms:.1f}")
            del engine
        if network in calls:
            where = f"ms per document page ({len(calls[network])} calls / {pages} pages)"
        else:
            name, shape = next(iter(ALONE_SHAPES[network].items()))
            where = f"ms per call, {name} " + "x".join(map(str, shape))
        lines.append(f"| {network} | {where} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(server, concurrencies, quick: bool = False) -> Report:
    only = tuple(filter(None, os.environ.get("PERF_ENGINES_PIPELINES", "").split(",")))
    seconds = 8 if quick else 15
    chosen = [pipeline for pipeline in PIPELINES if not only or pipeline.entry in only]
    tables, notes = [], []
    # a subset times its own networks only
    per_call = alone(2 if quick else 4, [network for pipeline in chosen for network in pipeline.networks] if only else ())
    for pipeline in chosen:
        table, found = in_pipeline(pipeline, seconds)
        tables.append(table)
        notes += found
    return Report(tables, [
        "Each network alone, one process, one engine at a time (f32 unless marked):\n\n" + per_call,
        "In the pipeline (compute per execution from Triton's statistics, same run):\n\n" + "\n".join(notes),
    ])
