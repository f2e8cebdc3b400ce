"""OCR: perf_analyzer on `ocr` and `ocr_bls` (real picture bytes) beside
RapidOCR called directly in one process (sequential) and RapidOCR behind a
plain asyncio web server (the seed's Sanic-style approach), same pictures."""

from __future__ import annotations

import tempfile
from pathlib import Path

from perf.baseline_server import BaselineServer
from perf.harness import closed_loop, format_table, run_perf_analyzer, write_input_data
from pipelines.client import encoded_bytes_tensor
from pipelines.ocr.testset import samples
from pipelines.runtime.server import free_port

DIRECT = "RapidOCR direct (sequential)"


def pictures() -> list[bytes]:
    """The test set without the >2000 px picture, which alone would dominate."""
    return [s.data for s in samples() if s.name != "large"]


def run(server, concurrencies, quick: bool = False) -> str:
    from rapidocr_onnxruntime import RapidOCR

    data = pictures()
    scratch = Path(tempfile.mkdtemp(prefix="perf-ocr-"))
    inputs = write_input_data([{"input_image": encoded_bytes_tensor(d)} for d in data], scratch / "ocr.json")
    seconds = 8 if quick else 20
    rows = []
    for model in ("ocr", "ocr_bls"):
        for c in concurrencies:
            rows.append(run_perf_analyzer(model, server.http_url, c, inputs, measurement_ms=seconds * 1000, fallback_requests=len(data)))
    engine = RapidOCR()
    rows.append(closed_loop(lambda i: (engine(data[i % len(data)]), 1)[1], 1, duration_s=seconds, label=DIRECT))
    with BaselineServer("ocr", free_port(), mode="async") as plain:
        for c in concurrencies:
            rows.append(closed_loop(lambda i: (plain.post(data[i % len(data)]), 1)[1], c, duration_s=seconds, label="RapidOCR async web server"))
    return format_table(rows, "images", reference=DIRECT)
