"""Driving the page in Debian's headless Chromium (packages chromium and
chromium-driver, `make chromium`) with Selenium, for the browser tests and
`make screenshots`. Selenium's own browser download cannot be used here:
the system browser and its matching driver are named explicitly."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Callable, TypeVar

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
T = TypeVar("T")


def chromium_missing() -> str | None:
    """Why the browser cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).exists() or shutil.which(Path(path).name)):
            return f"{path} is missing (make chromium installs Debian's chromium and chromium-driver)"
    return None


class PageError(RuntimeError):
    """The page showed an error message."""


class Page:
    """One headless Chromium window on the page at `url`."""

    def __init__(self, url: str, width: int = 1440, height: int = 1000):
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={width},{height}", "--hide-scrollbars"):
            options.add_argument(argument)
        if os.geteuid() == 0:  # Chromium's sandbox refuses to run as root
            options.add_argument("--no-sandbox")
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.url = url

    def __enter__(self) -> "Page":
        return self

    def __exit__(self, *exc) -> None:
        self.driver.quit()

    def open(self, user: str | None = None, password: str | None = None) -> None:
        """Load the page (logging in when it asks) and wait for its tabs."""
        self.driver.get(self.url)
        if user is not None:
            self.wait(lambda: self.driver.find_element(By.CSS_SELECTOR, "input[name=username], input[type=text]"), what="the login form")
            self.driver.find_element(By.CSS_SELECTOR, "input[name=username], input[type=text]").send_keys(user)
            self.driver.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys(password)
            self.driver.find_element(By.CSS_SELECTOR, "button[type=submit], button.lg").click()
        self.wait(lambda: self.driver.find_elements(By.CSS_SELECTOR, "button[role=tab]"), what="the page's tabs")

    def wait(self, ready: Callable[[], T], timeout: float = 30.0, what: str = "the page") -> T:
        """`ready()` once it is truthy (polled; a vanished element counts as
        not yet); an error message on the page ends the wait at once."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = ready()
                if value:
                    return value
                toasts = self.error_toasts()
                if toasts:
                    raise PageError(f"waiting for {what}, the page said: {' | '.join(toasts)}")
            except (StaleElementReferenceException, WebDriverException):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f} s for {what}")
            time.sleep(0.1)

    def tab(self, label: str) -> None:
        button = next(b for b in self.driver.find_elements(By.CSS_SELECTOR, "button[role=tab]") if b.text.strip() == label)
        button.click()
        self.wait(lambda: button.get_attribute("aria-selected") == "true", what=f"tab {label}")

    def element(self, elem_id: str, css: str = ""):
        return self.driver.find_element(By.CSS_SELECTOR, f"#{elem_id} {css}".strip())

    def elements(self, elem_id: str, css: str) -> list:
        return self.driver.find_elements(By.CSS_SELECTOR, f"#{elem_id} {css}")

    def upload(self, elem_id: str, path: Path) -> None:
        """Put a file into a gr.File or gr.Image upload (its hidden file input)."""
        name = Path(path).name
        self.element(elem_id, "input[type=file]").send_keys(str(Path(path).resolve()))
        self.wait(lambda: self.elements(elem_id, f'td.filename[aria-label="{name}"]'), what=f"{name} uploaded")

    def click(self, elem_id: str) -> None:
        self.element(elem_id).click()

    def text(self, elem_id: str) -> str:
        return self.element(elem_id).text

    def set_number(self, elem_id: str, value: float) -> None:
        """A gr.Slider's or gr.Number's number box."""
        box = self.element(elem_id, "input[type=number]")
        box.clear()
        box.send_keys(str(value))
        box.send_keys("\t")

    def image_source(self, elem_id: str) -> str | None:
        """The src of the picture a gr.Image shows, or None."""
        images = self.elements(elem_id, "img")
        return images[0].get_attribute("src") if images else None

    def table_rows(self, elem_id: str) -> dict[int, list[str]]:
        """{row index: cell texts} of the gr.Dataframe rows on screen (it renders the visible ones only)."""
        rows = self.elements(elem_id, "[role=row][data-index]")
        return {int(row.get_attribute("data-index")): [cell.text for cell in row.find_elements(By.CSS_SELECTOR, "[role=gridcell]")] for row in rows}

    def error_toasts(self) -> list[str]:
        return [toast.text for toast in self.driver.find_elements(By.CSS_SELECTOR, ".toast-body")]

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        """The window (or, full_page, the whole page: the window is grown to its height) as PNG."""
        path.parent.mkdir(parents=True, exist_ok=True)
        size = self.driver.get_window_size()
        if full_page:
            self.driver.execute_script("window.scrollTo(0, 0)")
            # the app's own container holds the page; the window's frame takes what innerHeight lacks
            content, frame = self.driver.execute_script(
                "const app = document.querySelector('.gradio-container') || document.body;"
                "return [Math.ceil(app.getBoundingClientRect().bottom), window.outerHeight - window.innerHeight];"
            )
            self.driver.set_window_size(size["width"], min(int(content) + int(frame) + 24, 4000))
            time.sleep(0.3)  # a relayout at the new size
        self.driver.save_screenshot(str(path))
        if full_page:
            self.driver.set_window_size(size["width"], size["height"])
        return path
