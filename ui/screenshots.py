"""`python -m ui.screenshots [FOLDER] [--url GRPC_URL --metrics-url URL]` (make
screenshots): a server on the model repository (or the running one at
--url), the page on it, and each tab after its action captured in headless
Chromium as FOLDER/ui-<tab>.png (default docs/images/)."""

from __future__ import annotations

import argparse
import contextlib
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
    def well_under_way() -> bool:  # a few previews in, the progress bar a third along
        words = page.text("sd-status").split()
        return len(words) > 1 and words[0] == "Step" and int(words[1]) >= 14 and bool(page.image_source("sd-preview"))

    page.wait(well_under_way, timeout=120, what="a preview")
    shot("stable-diffusion-progress")
    page.wait(lambda: "Done" in page.text("sd-status"), timeout=180, what="the final image")
    shot("stable-diffusion")
    page.tab("Server")
    page.click("server-refresh")
    page.wait(lambda: "READY" in page.text("server-summary"), timeout=60, what="the models")
    shot("server")
    return shots


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=REPO_ROOT / "docs" / "images")
    parser.add_argument("--url", help="a running server's gRPC endpoint (default: start one on model_repository/)")
    parser.add_argument("--metrics-url", help="with --url: its metrics page")
    args = parser.parse_args(argv)
    missing = chromium_missing()
    if missing:
        print(missing, file=sys.stderr)
        return 1
    with contextlib.ExitStack() as stack:
        if args.url:
            grpc_url, metrics_url = args.url, args.metrics_url or f"http://{args.url.rsplit(':', 1)[0]}:8002/metrics"
        else:
            server = stack.enter_context(TritonServer())
            grpc_url, metrics_url = server.grpc_url, f"http://localhost:{server.metrics_port}/metrics"
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ui-screenshots-")))
        for path in screenshots(grpc_url, metrics_url, args.folder, work):
            print(f"wrote {path}")
    return 0


def screenshots(grpc_url: str, metrics_url: str, folder: Path, work: Path) -> list[Path]:
    """The page (`python -m ui`) on the server, captured tab by tab."""
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "localhost,127.0.0.1"}
    page_process = subprocess.Popen([sys.executable, "-m", "ui", "--url", grpc_url, "--metrics-url", metrics_url, "--port", str(port)], env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while not page_up(url):
            if page_process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the page did not come up")
            time.sleep(0.25)
        with Page(url, width=WIDTH, height=1000) as page:
            page.open()
            return capture(page, folder, work)
    finally:
        page_process.send_signal(signal.SIGTERM)
        page_process.wait(30)


if __name__ == "__main__":
    sys.exit(main())
