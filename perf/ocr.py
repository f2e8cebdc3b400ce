"""OCR: perf_analyzer on `ocr` and `ocr_bls` (real picture bytes) beside
RapidOCR called directly in one process (sequential) and RapidOCR behind a
plain asyncio web server (the seed's Sanic-style approach), same pictures."""

from __future__ import annotations


from perf.baseline_server import BaselineServer
from perf.harness import closed_loop, format_table, picture_inputs, run_perf_analyzer
from pipelines.ocr.testset import samples
from pipelines.runtime.server import free_port

DIRECT = "RapidOCR direct (sequential)"


def pictures() -> list[bytes]:
    """The test set without the >2000 px picture, which alone would dominate."""
    return [s.data for s in samples() if s.name != "large"]


def run(server, concurrencies, quick: bool = False) -> str:
    from rapidocr_onnxruntime import RapidOCR

    data = pictures()
    inputs = picture_inputs(data, "ocr")
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
