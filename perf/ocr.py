"""OCR: perf_analyzer on `ocr` and `ocr_bls` (real picture bytes) beside
RapidOCR called directly, on two picture sets:

- text-dense document pages (tools/testsets/documents.py: forms, invoices,
  articles, receipts), against RapidOCR's OpenVINO flavour (the strongest
  CPU peer; a venv of its own, build/venv-rapidocr-openvino) and its
  ONNX Runtime flavour, each called sequentially in a process of its own;
- the repository's OCR test set, against RapidOCR direct and RapidOCR behind
  a plain asyncio web server (the seed's Sanic-style approach).

The served lines must equal RapidOCR's on every page (stated in the report).
Where the served time goes comes from Triton's statistics, and the ceiling
from the stages' compute time per page at concurrency 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from perf.baseline_server import BaselineServer
from perf.harness import closed_loop, picture_inputs, run_perf_analyzer, sequential
from perf.report import Report, Row, Table
from tools import pbtxt, triton_stats
from tools.paths import MODEL_REPOSITORY, REPO_ROOT
from tools.runtime.server import free_port
from tools.testsets.ocr import samples

DIRECT = "RapidOCR direct (sequential)"
OPENVINO = "rapidocr-openvino (sequential)"
ONNXRUNTIME = "rapidocr-onnxruntime (sequential)"
STAGES = ("image_decode", "ocr_det_pre", "ocr_det", "ocr_recognize", "ocr_cls", "ocr_rec", "ocr_bls")
BASELINE_PYTHON = {"openvino": REPO_ROOT / "build" / "venv-rapidocr-openvino" / "bin" / "python", "onnxruntime": Path(sys.executable)}


def pictures() -> list[bytes]:
    """The test set without the >2000 px picture, which alone would dominate."""
    return [s.data for s in samples() if s.name != "large"]


def rapidocr(flavour: str, pages: list[bytes], seconds: float) -> tuple[Row, list[list[str]]]:
    """RapidOCR's `flavour` in a process of its own: its row and lines."""
    folder = Path(tempfile.mkdtemp(prefix=f"perf-rapidocr-{flavour}-"))
    for index, page in enumerate(pages):
        (folder / f"{index:03d}").write_bytes(page)
    out = folder / "result.json"
    python = BASELINE_PYTHON[flavour]
    if not python.exists():
        raise SystemExit(f"{python} is missing: `make perf` builds RapidOCR's OpenVINO venv")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    script = REPO_ROOT / "perf" / "rapidocr_baseline.py"
    subprocess.run([str(python), str(script), "--flavour", flavour, "--pictures", str(folder), "--seconds", str(seconds), "--out", str(out)], check=True, env=env)
    result = json.loads(out.read_text())
    label = OPENVINO if flavour == "openvino" else ONNXRUNTIME
    return Row(label, 1, result["throughput"], result["p50_ms"], result["p95_ms"]), result["lines"]


def served_lines(server, pages: list[bytes], model: str = "ocr") -> list[list[str]]:
    from clients.ocr_client import OcrClient

    client = OcrClient(server.http_url, model=model)
    return [[line["text"] for line in client.recognize(page)] for page in pages]


def same_lines(name: str, mine: list[list[str]], theirs: list[list[str]]) -> str:
    equal = sum(a == b for a, b in zip(mine, theirs, strict=True))
    lines = sum(len(page) for page in theirs)
    return f"{equal}/{len(theirs)} pages with lines identical to {name} ({lines} lines)"


def threads_of(model: str) -> int:
    """Cores a network's engine uses (1 for the Python stages)."""
    parameters = pbtxt.parse((MODEL_REPOSITORY / model / "config.pbtxt").read_text()).parameters
    for key in ("INFERENCE_NUM_THREADS", "intra_op_thread_count"):
        if key in parameters:
            return int(parameters[key].string_value)
    return 1


def ceiling(stats: dict[str, triton_stats.ModelStats], pages: int, cores: int) -> tuple[float, str]:
    """Pages/s if the cores did nothing but each stage's compute of one page
    (measured at concurrency 1, times the cores each stage uses). The BLS
    stage's compute includes its wait for ocr_cls/ocr_rec: those are counted
    once, in the networks, by taking ocr_recognize's own part only."""
    ms = {m: s.compute_ns / 1e6 / pages for m, s in stats.items()}
    own = dict(ms)
    own["ocr_recognize"] = max(ms["ocr_recognize"] - ms["ocr_cls"] - ms["ocr_rec"], 0.0)
    core_ms = sum(own[m] * threads_of(m) for m in own)
    parts = ", ".join(f"{m} {own[m]:.0f} ms x{threads_of(m)}" for m in own)
    return cores * 1000 / core_ms, f"core time per page: {parts} = {core_ms:.0f} core-ms"


def served_rows(server, inputs: Path, count: int, concurrencies, seconds: float) -> tuple[list[Row], list[str]]:
    """perf_analyzer on `ocr` and `ocr_bls`, and where each run's time went."""
    rows, shares = [], []
    for model in ("ocr", "ocr_bls"):
        for c in concurrencies:
            before = triton_stats.read_all(server.http_url, STAGES)
            rows.append(run_perf_analyzer(model, server.http_url, c, inputs, measurement_ms=int(seconds * 1000), fallback_requests=count))
            after = triton_stats.read_all(server.http_url, STAGES)
            busy = {m: after[m] for m in STAGES if (after[m] - before[m]).executions}
            shares.append(f"- {model} at concurrency {c}: " + triton_stats.time_shares({m: before[m] for m in busy}, busy))
    return rows, shares


def documents_table(server, concurrencies, seconds: float) -> tuple[Table, list[str]]:
    from tools.testsets.documents import pages as document_pages

    pages = [page.data for page in document_pages()]
    inputs = picture_inputs(pages, "ocr-documents")
    served = served_lines(server, pages)
    used = ("image_decode", "ocr_det_pre", "ocr_det", "ocr_recognize", "ocr_cls", "ocr_rec")
    before = triton_stats.read_all(server.http_url, used)
    served_lines(server, pages)  # one pass at concurrency 1: each stage's compute per page
    after = triton_stats.read_all(server.http_url, used)
    cores = os.cpu_count() or 1
    limit, how = ceiling({m: after[m] - before[m] for m in used}, len(pages), cores)
    rows, notes = served_rows(server, inputs, len(pages), concurrencies, seconds)
    row, openvino_lines = rapidocr("openvino", pages, seconds)
    rows.append(row)
    row, onnxruntime_lines = rapidocr("onnxruntime", pages, seconds)
    rows.append(row)
    best = max(r.throughput for r in rows if r.system in ("ocr", "ocr_bls"))
    summary = [
        f"Served lines: {same_lines('rapidocr-openvino', served, openvino_lines)}; {same_lines('rapidocr-onnxruntime', served, onnxruntime_lines)}.",
        f"Ceiling on {cores} cores: {limit:.2f} pages/s ({how}, measured at concurrency 1); "
        f"the best served throughput, {best:.2f} pages/s, is {best / limit:.0%} of it.",
    ]
    title = f"OCR: {len(pages)} text-dense document pages (tools/testsets/documents.py), one per request"
    return Table(title, "pages", rows, OPENVINO), summary + ["Per composing model on the document pages (mean per execution):\n\n" + "\n".join(notes)]


def test_set_table(server, concurrencies, seconds: float) -> tuple[Table, list[str]]:
    from rapidocr_onnxruntime import RapidOCR

    data = pictures()
    inputs = picture_inputs(data, "ocr")
    rows, shares = served_rows(server, inputs, len(data), concurrencies, seconds)
    engine = RapidOCR()
    rows.append(sequential(lambda picture: engine(picture), data, seconds, DIRECT))
    with BaselineServer("ocr", free_port(), mode="async") as plain:
        for c in concurrencies:
            rows.append(closed_loop(lambda i: (plain.post(data[i % len(data)]), 1)[1], c, duration_s=seconds, label="RapidOCR async web server"))
    table = Table(f"OCR: {len(data)} test pictures (tools/testsets/ocr.py without the >2000 px one), one per request", "images", rows, DIRECT)
    return table, ["Per composing model on the test set (mean per execution):\n\n" + "\n".join(shares)]


def run(server, concurrencies, quick: bool = False) -> Report:
    seconds = 8 if quick else 20
    documents, document_notes = documents_table(server, concurrencies, seconds)
    test_set, test_set_notes = test_set_table(server, concurrencies, seconds)
    return Report([documents, test_set], document_notes + test_set_notes)
