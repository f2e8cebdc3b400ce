"""The web page in a real browser: Debian's headless Chromium (make chromium)
driven by Selenium on `python -m ui` against the session's server. OCR:
upload a document page, see the overlay and the table. Stable Diffusion:
the progress bar moves, Stop stops the server's steps, a run shows its
final image. Each test saves a screenshot under build/ui-tests/."""

from __future__ import annotations

import time

import pytest

from clients import triton_stats
from clients.ocr_client import OcrClient
from ui.samples import write_samples
from ui_helpers import SCREENSHOTS

pytest.importorskip("selenium")
from ui.browser import Page, chromium_missing  # noqa: E402  (selenium: requirements/ui.txt)

pytestmark = pytest.mark.skipif(chromium_missing() is not None, reason=chromium_missing() or "")


@pytest.fixture
def browser(ui_page):
    with Page(ui_page.url) as page:
        page.open()
        yield page


def test_ocr_upload_shows_the_overlay_and_the_table(browser, triton, tmp_path):
    document = write_samples(tmp_path).documents[1]
    browser.tab("OCR")
    browser.upload("ocr-picture", document)
    browser.click("ocr-run")
    info = browser.wait(lambda: "lines" in browser.text("ocr-info") and browser.text("ocr-info"), timeout=120, what="the OCR result")
    expected = OcrClient(triton.grpc_url, "grpc").recognize(document.read_bytes())
    rows = browser.wait(lambda: len(browser.table_rows("ocr-lines")) >= min(len(expected), 8) and browser.table_rows("ocr-lines"), what="the table")
    assert {index: cells[:2] for index, cells in rows.items()} == {index: [str(index + 1), expected[index]["text"]] for index in rows}
    assert browser.image_source("ocr-overlay"), "the picture with its boxes is shown"
    assert f"{len(expected)} lines" in info and not browser.error_toasts()
    browser.screenshot(SCREENSHOTS / "browser-ocr.png")


def progress_now(browser) -> int:
    """The step the tab's progress bar stands at."""
    bars = browser.elements("sd-status", "progress")
    return int(float(bars[0].get_attribute("value") or 0)) if bars else 0


def test_stable_diffusion_progress_stop_and_final_image(browser, http_client):
    browser.tab("Stable Diffusion")
    before = triton_stats.settled(http_client, "sd_unet")
    browser.set_number("sd-steps", 200)
    browser.click("sd-run")
    first = browser.wait(lambda: progress_now(browser), timeout=60, what="the progress bar")
    moved = browser.wait(lambda: progress_now(browser) > first and progress_now(browser), timeout=60, what="the progress bar to move")
    assert 0 < first < moved < 200
    browser.screenshot(SCREENSHOTS / "browser-sd-running.png")
    browser.click("sd-stop")
    status = browser.wait(lambda: "Stopped" in browser.text("sd-status") and browser.text("sd-status"), timeout=30, what="Stopped")
    stopped_at = int(status.split("after step")[1].split(":")[0])
    time.sleep(1.0)
    ran = (triton_stats.settled(http_client, "sd_unet", quiet=1.0) - before).inferences // 2
    assert stopped_at < 200 and ran <= stopped_at + 2, f"the server ran {ran} steps; the page stopped at {stopped_at}"
    browser.screenshot(SCREENSHOTS / "browser-sd-stopped.png")
    browser.set_number("sd-steps", 8)
    browser.click("sd-run")
    browser.wait(lambda: "Done" in browser.text("sd-status"), timeout=120, what="the final image")
    assert browser.image_source("sd-final") and not browser.error_toasts()
    browser.screenshot(SCREENSHOTS / "browser-sd-final.png")
