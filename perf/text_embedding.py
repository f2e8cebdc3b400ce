"""text_embedding: perf_analyzer (one sentence per request) beside a naive
server running the torch model once per request, and the offline limit
(onnxruntime encoding all sentences in length-sorted batches of 64 in one process)."""

from __future__ import annotations

import json
import time

from perf.baseline_server import BaselineServer
from perf.harness import closed_loop, offline, run_perf_analyzer, text_inputs
from perf.report import Report, Table
from runtime.paths import MODEL_REPOSITORY
from references.text import OnnxSentenceEncoder
from runtime.server import free_port
from testsets.sentences import varied_sentences

NAIVE = "naive torch server"
OFFLINE = "offline onnxruntime, batches of 64"


def run(server, concurrencies, quick: bool = False) -> Report:
    sentences = varied_sentences(200 if quick else 300)
    data = text_inputs(sentences, "text")
    measurement_ms = 3000 if quick else 6000
    rows = [run_perf_analyzer("text_embedding", server.http_url, c, data, measurement_ms=measurement_ms) for c in concurrencies]
    with BaselineServer("text_embedding", free_port()) as naive:
        bodies = [json.dumps({"text": s}).encode() for s in sentences]
        for c in concurrencies:
            rows.append(closed_loop(lambda i: (naive.post(bodies[i % len(bodies)]), 1)[1], c, duration_s=measurement_ms / 1000, label=NAIVE))
    encoder = OnnxSentenceEncoder(MODEL_REPOSITORY / "text_encoder/1/model.onnx", MODEL_REPOSITORY / "text_tokenizer/1", threads=2)
    encoder.encode(sentences[:64])
    started = time.perf_counter()
    repeats = 1 if quick else 3
    for _ in range(repeats):
        encoder.encode(sentences, batch_size=64)
    rows.append(offline(OFFLINE, repeats * len(sentences) / (time.perf_counter() - started)))
    table = Table(f"text_embedding: {len(sentences)} varied sentences, one per request", "sentences", rows, NAIVE)
    top = max(concurrencies)
    served = table.value("triton text_embedding", top)
    return Report([table], [f"At concurrency {top}: text_embedding serves {served / table.value(NAIVE, top):.2f}x the naive server and {served / table.value(OFFLINE, None):.2f}x the offline batched limit."])
