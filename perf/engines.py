"""Which engine and how many threads for each ONNX network: measured in its
pipeline under load, and alone.

In the pipeline: for each pipeline, a linked copy of the models it needs is
served with every network of it set to one variant (engine, threads, ONNX
Runtime's intra-op spinning), and perf_analyzer drives the entry model at
concurrency 4 with real inputs; Triton's statistics give each network's
compute time per execution over that run. Alone: each network in one
process, one engine session, a fixed input, ms per call.

    make perf PERF_ARGS=engines     # writes perf/results/engines.md
    PERF_ENGINES_PIPELINES=ocr,orientation make perf PERF_ARGS=engines   # a subset

The winners are what config.pbtxt serves; the other engine is the custom
configuration `configs/<engine>.pbtxt` (tools/engine_configs.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from perf.harness import picture_inputs, run_perf_analyzer, text_inputs
from perf.instance_sweep import linked_copy
from perf.report import Report, Row, Table
from tools import pbtxt, triton_stats
from tools.engine_configs import engine_config, engine_of
from tools.paths import MODEL_REPOSITORY
from tools.runtime.server import TritonServer

NEEDS_SERVER = False
CONCURRENCY = 4


@dataclass(frozen=True)
class Variant:
    engine: str
    threads: int
    spinning: bool = True  # ONNX Runtime's intra-op pool only

    @property
    def label(self) -> str:
        spin = "" if self.engine != "onnxruntime" else (", spinning" if self.spinning else ", no spinning")
        return f"{self.engine} {self.threads} thread{'s' if self.threads > 1 else ''}{spin}"


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
        return pbtxt.set_parameter(text, "INFERENCE_NUM_THREADS", str(variant.threads))
    text = pbtxt.set_parameter(text, "intra_op_thread_count", str(variant.threads))
    return pbtxt.set_parameter(text, "session.intra_op.allow_spinning", "1" if variant.spinning else "0")


def _document_inputs() -> Path:
    from tools.testsets.documents import pages

    return picture_inputs([page.data for page in pages()], "engines-documents")


def _photo_inputs() -> Path:
    from tools.testsets.images import photo_samples

    return picture_inputs([sample.data for sample in photo_samples()], "engines-photos")


def _sentence_inputs() -> Path:
    from tools.testsets.sentences import varied_sentences

    return text_inputs(varied_sentences(), "engines-texts")


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
        with TritonServer(repositories=[repository]) as server:
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

ALONE_INPUTS = {
    "ocr_det": {"x": (1, 3, 736, 960)},
    "ocr_rec": {"x": (6, 3, 48, 320)},
    "ocr_cls": {"x": (6, 3, 48, 192)},
    "orientation_classifier": {"x": (1, 3, 224, 224)},
    "vit_model": {"pixel_values": (1, 3, 224, 224)},
    "clip_image_encoder": {"pixel_values": (1, 3, 224, 224)},
}


def _context(network: str, variant: Variant):
    from pipelines.serving.python_model import ModelContext

    text = variant_config((MODEL_REPOSITORY / network / "config.pbtxt").read_text(), variant)
    return ModelContext(config=pbtxt.as_json(pbtxt.parse(text)), model_dir=MODEL_REPOSITORY / network)


def alone(seconds: float) -> Table:
    from pipelines.serving.network import ENGINES

    rows = []
    for network, shapes in ALONE_INPUTS.items():
        rng = np.random.default_rng(0)
        for variant in (Variant("onnxruntime", 2, True), Variant("onnxruntime", 1, True), Variant("openvino", 2), Variant("openvino", 1)):
            engine = ENGINES[variant.engine](_context(network, variant))
            feeds = {name: rng.random(shape, dtype=np.float32) for name, shape in shapes.items() if name in engine.input_names}
            if len(feeds) != len(shapes):
                break  # the network's input names changed: skip rather than measure something else
            outputs = sorted(engine.output_names)[:1]
            engine.run(outputs, feeds)
            calls, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                engine.run(outputs, feeds)
                calls += 1
            elapsed = time.perf_counter() - start
            rows.append(Row(f"{network} {'x'.join(map(str, next(iter(shapes.values()))))}, {variant.label}", None, calls / elapsed, p50_ms=elapsed / calls * 1000))
            del engine
    return Table("Each network alone, one process, ms per call (p50 column: mean ms per call)", "calls", rows)


def run(server, concurrencies, quick: bool = False) -> Report:
    only = tuple(filter(None, os.environ.get("PERF_ENGINES_PIPELINES", "").split(",")))
    seconds = 8 if quick else 15
    tables, notes = [alone(2 if quick else 4)], []
    for pipeline in PIPELINES:
        if only and pipeline.entry not in only:
            continue
        table, found = in_pipeline(pipeline, seconds)
        tables.append(table)
        notes += found
    return Report(tables, ["In the pipeline (compute per execution from Triton's statistics, same run):\n\n" + "\n".join(notes)])
