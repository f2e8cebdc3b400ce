"""`python -m ui.screenshots [FOLDER]` (make screenshots): a server on the
model repository, the page on it, and each tab after its action captured in
headless Chromium as FOLDER/ui-<tab>.png (default docs/images/)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from runtime.paths import REPO_ROOT
from runtime.server import TritonServer, free_port
from ui.browser import Page, chromium_missing
from ui.samples import write_samples

WIDTH = 1440


def page_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except (urllib.error.URLError, OSError):
        return False


def capture(page: Page, folder: Path, samples_folder: Path) -> list[Path]:
    """Each tab after its action; the paths written."""
    samples = write_samples(samples_folder)
    shots = []

    def shot(name: str) -> None:
        shots.append(page.screenshot(folder / f"ui-{name}.png", full_page=True))

    page.tab("OCR")
    page.upload("ocr-picture", samples.documents[0])
    page.click("ocr-run")
    page.wait(lambda: "lines" in page.text("ocr-info"), timeout=180, what="the OCR result")
    shot("ocr")
    page.tab("Classify")
    page.upload("classify-picture", samples.turned_pages[1])
    page.click("classify-run")
    page.wait(lambda: "last_hidden_state" in page.driver.page_source, timeout=120, what="the labels")
    shot("classify")
    page.tab("Text")
    page.click("text-run")
    page.wait(lambda: page.elements("text-heatmap", "img"), timeout=120, what="the heat map")
    page.wait(lambda: page.table_rows("text-tokens"), what="the tokens")
    shot("text")
    page.tab("CLIP search")
    page.click("clip-run")
    page.wait(lambda: len(page.elements("clip-gallery", "img")) >= 6, timeout=120, what="the gallery")
    time.sleep(1.0)  # the gallery's pictures load one by one
    shot("clip")
    page.tab("Stable Diffusion")
    page.set_number("sd-steps", 40)
    page.click("sd-run")
    page.wait(lambda: "Step 1" in page.text("sd-status") and page.image_source("sd-preview"), timeout=120, what="a preview")
    shot("stable-diffusion-progress")
    page.wait(lambda: "Done" in page.text("sd-status"), timeout=180, what="the final image")
    shot("stable-diffusion")
    page.tab("Server")
    page.click("server-refresh")
    page.wait(lambda: "READY" in page.text("server-summary"), timeout=60, what="the models")
    shot("server")
    return shots


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0] if argv else REPO_ROOT / "docs" / "images")
    missing = chromium_missing()
    if missing:
        print(missing, file=sys.stderr)
        return 1
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "localhost,127.0.0.1"}
    with TritonServer() as server, tempfile.TemporaryDirectory(prefix="ui-screenshots-") as work:
        metrics = f"http://localhost:{server.metrics_port}/metrics"
        page_process = subprocess.Popen([sys.executable, "-m", "ui", "--url", server.grpc_url, "--metrics-url", metrics, "--port", str(port)], env=env)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while not page_up(url):
                if page_process.poll() is not None or time.monotonic() > deadline:
                    print("the page did not come up", file=sys.stderr)
                    return 1
                time.sleep(0.25)
            with Page(url, width=WIDTH, height=1000) as page:
                page.open()
                for path in capture(page, folder, Path(work)):
                    print(f"wrote {path}")
        finally:
            page_process.send_signal(signal.SIGTERM)
            page_process.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
