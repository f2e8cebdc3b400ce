"""The web page as the UI tests run it: `python -m ui` (what make ui runs)
in a process of its own against a server, and gradio_client on it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from runtime.paths import BUILD_DIR, REPO_ROOT
from runtime.server import free_port
from ui.demo import http_status

SCREENSHOTS = BUILD_DIR / "ui-tests"
UI_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "localhost,127.0.0.1", "no_proxy": "localhost,127.0.0.1"}


class UiProcess:
    """`python -m ui` on a free port; its log in build/ui-tests/."""

    def __init__(self, grpc_url: str, metrics_url: str, auth: str | None = None, name: str = "ui"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "ui", "--url", grpc_url, "--metrics-url", metrics_url, "--port", str(self.port)]
        self.env = {**os.environ, **UI_ENV}
        self.env.pop("UI_AUTH", None)
        if auth:
            self.env["UI_AUTH"] = auth
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.log_path = SCREENSHOTS / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> "UiProcess":
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(self.args, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while http_status(self.url) not in (200, 401):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the page did not come up; its log:\n{self.log()}")
            time.sleep(0.25)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def client(self, download_dir: Path, auth: tuple[str, str] | None = None):
        from gradio_client import Client

        os.environ.update(UI_ENV)  # gradio_client's httpx would otherwise take a proxy for 127.0.0.1
        # ssl_verify=False: plain http on loopback; gradio_client would load the CA certificates for every file it fetches
        return Client(self.url, auth=auth, verbose=False, download_files=str(download_dir), ssl_verify=False)

    def __enter__(self) -> "UiProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
