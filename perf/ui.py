"""ui: what the web page adds to a request. `python -m ui` (the page, in a
process of its own) on the benchmark server; a script drives it with
gradio_client (upload, queue, server-sent events, the result files
downloaded) and, paired with it request by request, calls the same client
the page calls directly (clients/). Two measures, each against a target:
the p50 of OCR on one document page at concurrency 1 (the page adds at most
10%), and the time to the final Stable Diffusion image over
stable_diffusion_stream, previews and all (at most 5%).

Each pair runs the two systems back to back, the order alternating, so the
machine's drift (20-30% within minutes here) falls on both alike."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from clients.ocr_client import OcrClient
from clients.stable_diffusion_client import StableDiffusionClient
from perf.report import Report, Row, Table
from runtime.paths import REPO_ROOT
from runtime.server import free_port
from testsets.documents import pages

OCR_TARGET, SD_TARGET = 1.10, 1.05
PROMPT = "a lighthouse on a cliff at sunset, watercolor"
SD_STEPS = 20
UI_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "localhost,127.0.0.1", "no_proxy": "localhost,127.0.0.1"}


@dataclass
class Paired:
    direct_s: list[float]
    page_s: list[float]

    @property
    def ratio(self) -> float:
        """The median of the ratios taken within each pair."""
        return statistics.median(page / direct for page, direct in zip(self.page_s, self.direct_s))

    def rows(self, direct: str, page: str) -> list[Row]:
        return [timed_row(direct, self.direct_s), timed_row(page, self.page_s)]


def timed_row(system: str, seconds: list[float]) -> Row:
    ordered = sorted(seconds)
    p50 = statistics.median(ordered)
    return Row(system, 1, 1.0 / p50, p50 * 1000, ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000)


def paired(direct: Callable[[], object], page: Callable[[], object], pairs: int, warmup: int = 2) -> Paired:
    for _ in range(warmup):
        direct()
        page()
    result = Paired([], [])
    for index in range(pairs):
        order = ((direct, result.direct_s), (page, result.page_s))
        for call, times in order if index % 2 == 0 else reversed(order):
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
    return result


class PageProcess:
    """`python -m ui` (what make ui runs) on a free port against the server."""

    def __init__(self, server):
        self.port = free_port()
        metrics = f"http://localhost:{server.metrics_port}/metrics"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ui", "--url", server.grpc_url, "--metrics-url", metrics, "--port", str(self.port)],
            cwd=REPO_ROOT,
            env={**os.environ, **UI_ENV},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "PageProcess":
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(self.url, timeout=2):
                    return self
            except (urllib.error.URLError, OSError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError("the page did not come up (python -m ui)")
                time.sleep(0.25)

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)


def run(server, concurrencies, quick: bool = False) -> Report:
    from gradio_client import Client, handle_file

    os.environ.update(UI_ENV)
    document = pages(1)[0]
    pairs_ocr, pairs_sd = (6, 4) if quick else (20, 10)
    with PageProcess(server) as page, tempfile.TemporaryDirectory(prefix="perf-ui-") as work:
        picture = Path(work) / f"{document.name}.jpg"
        picture.write_bytes(document.data)
        script = Client(page.url, verbose=False, download_files=str(Path(work) / "downloads"))
        ocr = OcrClient(server.grpc_url, "grpc")
        lines = len(ocr.recognize(document.data))
        ocr_pairs = paired(lambda: ocr.recognize(picture.read_bytes()), lambda: script.predict(handle_file(str(picture)), "ocr", api_name="/ocr"), pairs_ocr)
        preview_every = max(1, SD_STEPS // 10)  # what the page asks for

        def direct_stream() -> None:
            client = StableDiffusionClient(server.grpc_url, "grpc")  # the page opens a stream per generation too
            try:
                assert client.generate_stream([PROMPT], lambda step, preview: None, steps=SD_STEPS, seed=3, preview_every=preview_every) is not None
            finally:
                client.close()

        def page_stream() -> None:
            progress, *_ = script.submit(PROMPT, "", SD_STEPS, 7.5, 3, "server default", api_name="/generate").result(timeout=300)
            assert progress["state"] == "done", progress

        sd_pairs = paired(direct_stream, page_stream, pairs_sd)
    ocr_table = Table(
        f"OCR, one document page ({document.name}, {document.size[0]}x{document.size[1]}, {lines} lines), concurrency 1, {pairs_ocr} pairs",
        "pages", ocr_pairs.rows("OcrClient.recognize (gRPC)", "the page: gradio_client /ocr"), "OcrClient.recognize (gRPC)",
    )
    sd_table = Table(
        f"Stable Diffusion over stable_diffusion_stream to the final image, {SD_STEPS} steps, a preview every {preview_every}, {pairs_sd} pairs",
        "images", sd_pairs.rows("StableDiffusionClient.generate_stream (gRPC)", "the page: gradio_client /generate"),
        "StableDiffusionClient.generate_stream (gRPC)",
    )
    return Report([ocr_table, sd_table], [verdict("OCR p50", ocr_pairs.ratio, OCR_TARGET), verdict("time to the final SD image (p50)", sd_pairs.ratio, SD_TARGET)])


def verdict(what: str, ratio: float, target: float) -> str:
    within = "within" if ratio <= target else "OVER"
    return f"{what}: the page takes **{ratio:.3f}x** the direct client's time, median of the pairs' ratios ({(ratio - 1) * 100:+.1f}%; target at most {target:.2f}x: {within})."
