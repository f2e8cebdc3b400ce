"""Smoke suite: perf_analyzer on `datatypes` (two Python models) and on
`datatypes_onnx` (the onnxruntime backend) with real inputs, beside calling
the same ONNX graph in-process with onnxruntime (the floor of any server's
overhead)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from perf.harness import closed_loop, run_perf_analyzer, write_input_data
from perf.report import Report, Table
from references.datatypes import CASES
from runtime.paths import MODEL_REPOSITORY

IN_PROCESS = "datatypes_onnx graph, onnxruntime in-process"


def datatypes_samples(n: int = 8) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [
        {
            "ensemble_input_string": np.array([f"sample {i} {j}".encode() for j in range(16)], dtype=np.object_),
            "ensemble_input_UINT8_array": rng.integers(0, 256, 16).astype(np.uint8),
            "ensemble_input_INT8_array": rng.integers(-128, 128, 16).astype(np.int8),
            "ensemble_input_FP32_image": rng.standard_normal((3, 32, 32)).astype(np.float32),
            "ensemble_input_bool": rng.integers(0, 2, 16).astype(bool),
        }
        for i in range(n)
    ]


def onnx_samples(n: int = 8) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [{c.input: rng.integers(0, 2 if c.dtype == "bool" else 50, 64).astype(c.dtype) for c in CASES} for _ in range(n)]


def run(server, concurrencies, quick: bool = False) -> Report:
    scratch = Path(tempfile.mkdtemp(prefix="perf-datatypes-"))
    datatypes_data = write_input_data(datatypes_samples(), scratch / "datatypes.json")
    onnx_data = write_input_data(onnx_samples(), scratch / "onnx.json")
    session = ort.InferenceSession(str(MODEL_REPOSITORY / "datatypes_onnx/1/model.onnx"), providers=["CPUExecutionProvider"])
    local = [{k: v[None] for k, v in s.items()} for s in onnx_samples()]
    measurement_ms = 2000 if quick else 5000
    rows = [run_perf_analyzer("datatypes", server.http_url, c, datatypes_data, measurement_ms=measurement_ms) for c in concurrencies]
    rows += [run_perf_analyzer("datatypes_onnx", server.http_url, c, onnx_data, measurement_ms=measurement_ms) for c in concurrencies]
    rows += [
        closed_loop(lambda i: (session.run(None, local[i % len(local)]), 1)[1], c, duration_s=measurement_ms / 1000, label=IN_PROCESS)
        for c in concurrencies
    ]
    table = Table("datatypes (two Python models) and datatypes_onnx (onnxruntime backend), one request of 1 row each", "requests", rows)
    return Report(
        [table],
        [
            "The in-process rows are the floor of any server's overhead (the same graph without a server); the served "
            "rows show what a request costs here: HTTP, the scheduler, the Python stub's shared-memory hand-off. "
            "perf_analyzer runs over HTTP: its synchronous gRPC mode paused between requests at concurrency 1 on this machine."
        ],
    )
