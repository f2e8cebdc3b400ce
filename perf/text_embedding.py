"""text_embedding: perf_analyzer (one sentence per request) beside a naive
server running the torch model once per request, and the offline limit
(onnxruntime encoding all sentences in batches of 64 in one process)."""

from __future__ import annotations

import json
import time


from perf.baseline_server import BaselineServer
from perf.harness import Row, closed_loop, format_table, run_perf_analyzer, text_inputs
from pipelines.runtime.distribution import REPO_ROOT
from pipelines.runtime.server import free_port
from pipelines.text.minilm import OnnxSentenceEncoder
from pipelines.text.sentences import varied_sentences

UNIT = "sentences"


def run(server, concurrencies, quick: bool = False) -> str:
    sentences = varied_sentences(200 if quick else 300)
    data = text_inputs(sentences, "text")
    measurement_ms = 3000 if quick else 6000
    rows = []
    for c in concurrencies:
        rows.append(run_perf_analyzer("text_embedding", server.http_url, c, data, measurement_ms=measurement_ms))
    with BaselineServer("text_embedding", free_port()) as naive:
        bodies = [json.dumps({"text": s}).encode() for s in sentences]
        for c in concurrencies:
            rows.append(
                closed_loop(lambda i: (naive.post(bodies[i % len(bodies)]), 1)[1], c, duration_s=measurement_ms / 1000, label="naive torch server")
            )
    encoder = OnnxSentenceEncoder(
        REPO_ROOT / "model_repository/text_encoder/1/model.onnx", REPO_ROOT / "model_repository/text_tokenizer/1", threads=2
    )
    encoder.encode(sentences[:64])
    started = time.perf_counter()
    repeats = 1 if quick else 3
    for _ in range(repeats):
        encoder.encode(sentences, batch_size=64)
    elapsed = time.perf_counter() - started
    rows.append(Row("offline onnxruntime, batches of 64", 0, repeats * len(sentences) / elapsed, 0.0, 0.0))
    table = format_table(rows, UNIT, reference="naive torch server")
    top = max(concurrencies)
    served = next(r.throughput for r in rows if r.system == "triton text_embedding" and r.concurrency == top)
    offline = rows[-1].throughput
    return table + f"\n\nAt concurrency {top}: text_embedding reaches {served / offline:.2f}x the offline batched limit."
