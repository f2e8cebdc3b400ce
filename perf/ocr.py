"""OCR: perf_analyzer on `ocr` and `ocr_bls` (real picture bytes) beside
RapidOCR called directly in one process (sequential) and RapidOCR behind a
plain asyncio web server (the seed's Sanic-style approach), same pictures.
Where the served time goes comes from Triton's statistics."""

from __future__ import annotations

from perf.baseline_server import BaselineServer
from perf.harness import closed_loop, picture_inputs, run_perf_analyzer, sequential
from perf.report import Report, Table
from tools import triton_stats
from tools.runtime.server import free_port
from tools.testsets.ocr import samples

DIRECT = "RapidOCR direct (sequential)"
STAGES = ("image_decode", "ocr_det_pre", "ocr_det", "ocr_recognize", "ocr_cls", "ocr_rec", "ocr_bls")


def pictures() -> list[bytes]:
    """The test set without the >2000 px picture, which alone would dominate."""
    return [s.data for s in samples() if s.name != "large"]


def run(server, concurrencies, quick: bool = False) -> Report:
    from rapidocr_onnxruntime import RapidOCR

    data = pictures()
    inputs = picture_inputs(data, "ocr")
    seconds = 8 if quick else 20
    rows, shares = [], []
    for model in ("ocr", "ocr_bls"):
        for c in concurrencies:
            before = triton_stats.read_all(server.http_url, STAGES)
            rows.append(run_perf_analyzer(model, server.http_url, c, inputs, measurement_ms=seconds * 1000, fallback_requests=len(data)))
            after = triton_stats.read_all(server.http_url, STAGES)
            used = {m: after[m] for m in STAGES if (after[m] - before[m]).executions}
            shares.append(f"- {model} at concurrency {c}: " + triton_stats.time_shares({m: before[m] for m in used}, used))
    engine = RapidOCR()
    rows.append(sequential(lambda picture: engine(picture), data, seconds, DIRECT))
    with BaselineServer("ocr", free_port(), mode="async") as plain:
        for c in concurrencies:
            rows.append(closed_loop(lambda i: (plain.post(data[i % len(data)]), 1)[1], c, duration_s=seconds, label="RapidOCR async web server"))
    table = Table(f"OCR: {len(data)} test pictures (tools/testsets/ocr.py without the >2000 px one), one per request", "images", rows, DIRECT)
    return Report([table], ["Per composing model, from Triton's statistics over each measurement (mean per execution):\n\n" + "\n".join(shares)])
