"""ui: what the web page adds to a request. `python -m ui` (the page, in a
process of its own) on the benchmark server; a script drives it with
gradio_client (upload, queue, server-sent events, the result files
downloaded) and, in the same rounds, calls the client the page calls
(clients/) directly. Two measures, each against a target: the p50 of OCR
on one document page at concurrency 1 (the page adds at most 10%), and the
time to the final Stable Diffusion image over stable_diffusion_stream,
previews and all (at most 5%).

Each round runs the systems back to back, the order rotating, and the
ratio is taken within the round, so the machine's drift (20-30% within
minutes here) falls on all alike."""

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
class Rounds:
    """Seconds per system, one call of each per round."""

    seconds: dict[str, list[float]]

    def ratio(self, system: str, reference: str) -> float:
        """The median of the ratios taken within each round."""
        return statistics.median(a / b for a, b in zip(self.seconds[system], self.seconds[reference]))

    def rows(self) -> list[Row]:
        return [timed_row(system, seconds) for system, seconds in self.seconds.items()]


def timed_row(system: str, seconds: list[float]) -> Row:
    ordered = sorted(seconds)
    p50 = statistics.median(ordered)
    return Row(system, 1, 1.0 / p50, p50 * 1000, ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000)


def rounds(systems: dict[str, Callable[[], object]], count: int, warmup: int = 2) -> Rounds:
    """`count` rounds, each calling every system once back to back, the
    order rotating from round to round (drift falls on all alike)."""
    for _ in range(warmup):
        for call in systems.values():
            call()
    result = Rounds({name: [] for name in systems})
    names = list(systems)
    for index in range(count):
        for name in names[index % len(names) :] + names[: index % len(names)]:
            started = time.perf_counter()
            systems[name]()
            result.seconds[name].append(time.perf_counter() - started)
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


DIRECT_OCR = "OcrClient.recognize (gRPC)"
DIRECT_SD = "StableDiffusionClient.generate_stream (gRPC)"
# gradio_client fetches each result file with a new httpx client, which loads
# the CA certificates each time (30-50 ms here) even for plain http: the page
# is measured with ssl_verify=False (no TLS on loopback, nothing to verify),
# and also with the default client
PAGE = "the page: gradio_client, ssl_verify=False"
PAGE_DEFAULT = "the page: gradio_client, default"


def run(server, concurrencies, quick: bool = False) -> Report:
    from gradio_client import Client, handle_file  # optional (requirements/ui.txt): only this suite needs it

    os.environ.update(UI_ENV)
    document = pages(1)[0]
    count_ocr, count_sd = (4, 4) if quick else (12, 12)
    preview_every = max(1, SD_STEPS // 5)  # what the page asks for
    with PageProcess(server) as page, tempfile.TemporaryDirectory(prefix="perf-ui-") as work:
        picture = Path(work) / f"{document.name}.jpg"
        picture.write_bytes(document.data)
        scripts = {
            PAGE: Client(page.url, verbose=False, download_files=str(Path(work) / "fast"), ssl_verify=False),
            PAGE_DEFAULT: Client(page.url, verbose=False, download_files=str(Path(work) / "default")),
        }
        ocr = OcrClient(server.grpc_url, "grpc")
        lines = len(ocr.recognize(document.data))

        def page_ocr(script):
            return lambda: script.predict(handle_file(str(picture)), "ocr", api_name="/ocr")

        ocr_rounds = rounds({DIRECT_OCR: lambda: ocr.recognize(picture.read_bytes()), **{n: page_ocr(c) for n, c in scripts.items()}}, count_ocr)

        def direct_stream() -> None:
            client = StableDiffusionClient(server.grpc_url, "grpc")  # the page opens a stream per generation too
            try:
                assert client.generate_stream([PROMPT], lambda step, preview: None, steps=SD_STEPS, seed=3, preview_every=preview_every) is not None
            finally:
                client.close()

        def page_stream(script):
            def call() -> None:
                progress, *_ = script.submit(PROMPT, "", SD_STEPS, 7.5, 3, "server default", api_name="/generate").result(timeout=300)
                assert progress["state"] == "done", progress

            return call

        sd_rounds = rounds({DIRECT_SD: direct_stream, **{n: page_stream(c) for n, c in scripts.items()}}, count_sd)
    ocr_table = Table(
        f"OCR, one document page ({document.name}, {document.size[0]}x{document.size[1]}, {lines} lines), concurrency 1, {count_ocr} rounds",
        "pages", ocr_rounds.rows(), DIRECT_OCR,
    )
    sd_table = Table(
        f"Stable Diffusion over stable_diffusion_stream to the final image, {SD_STEPS} steps, a preview every {preview_every}, {count_sd} rounds",
        "images", sd_rounds.rows(), DIRECT_SD,
    )
    notes = [
        verdict("OCR p50", ocr_rounds.ratio(PAGE, DIRECT_OCR), OCR_TARGET, ocr_rounds.ratio(PAGE_DEFAULT, DIRECT_OCR)),
        verdict("time to the final SD image (p50)", sd_rounds.ratio(PAGE, DIRECT_SD), SD_TARGET, sd_rounds.ratio(PAGE_DEFAULT, DIRECT_SD)),
        "Each round calls the direct client and the page through both gradio_client set-ups back to back, the order rotating; "
        "the ratios are taken within each round. The default gradio_client loads the CA certificates for every result file it "
        "fetches (a new httpx client each time), TLS or not: that is the script's cost, not the page's.",
    ]
    return Report([ocr_table, sd_table], notes)


def verdict(what: str, ratio: float, target: float, default_ratio: float) -> str:
    within = "within" if ratio <= target else "OVER"
    return (
        f"{what}: the page takes **{ratio:.3f}x** the direct client's time ({(ratio - 1) * 100:+.1f}%; target at most {target:.2f}x: {within}); "
        f"through the default gradio_client {default_ratio:.3f}x."
    )
