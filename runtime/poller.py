"""Load what changed in the model repository, every few seconds, with the
server in explicit model-control mode.

Triton's own poll mode does the same but closes the model-control API, which
the watchdog needs to bring back a model whose stub died or hung; so the
launcher runs the server in explicit mode and polls here: every model the
repository index lists is loaded again (Triton skips a model whose files did
not change, and builds a changed one beside the old, which serves until the
new one is ready), a new model folder is loaded, a model an administrator
unloaded is left alone. A model whose load fails is tried again with backoff
and reported each time."""

from __future__ import annotations

import threading
import time
from typing import Callable

from runtime.triton_api import TritonApiError, load, repository_index

BACKOFF_S = (30, 60, 120, 300)


class RepositoryPoller:
    def __init__(self, http_url: str, admin_key: str | None, interval_s: float, log: Callable[[str], None] = print):
        self.http_url = http_url
        self.admin_key = admin_key
        self.interval_s = interval_s
        self.log = log
        self.polls = 0
        self._served: dict[str, str] = {}  # model -> version READY at the last poll
        self._failures: dict[str, tuple[int, float]] = {}  # model -> (failed loads in a row, next try)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "RepositoryPoller":
        self._served = self._ready_versions()
        self._thread = threading.Thread(target=self._run, name="repository-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=600)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll_once()
            except TritonApiError as error:
                self.log(f"poll: repository index unavailable: {error}")

    def _ready_versions(self) -> dict[str, str]:
        return {m["name"]: m.get("version", "") for m in repository_index(self.http_url, self.admin_key) if m.get("state") == "READY"}

    def poll_once(self) -> None:
        now = time.monotonic()
        index = repository_index(self.http_url, self.admin_key)  # one entry per version
        unloaded = {m["name"] for m in index if m.get("reason") == "unloaded"} - {m["name"] for m in index if m.get("state") == "READY"}
        for name in sorted({m["name"] for m in index}):
            if name in unloaded or self._stop.is_set():
                continue  # unloaded on purpose (admin API)
            failures, next_try = self._failures.get(name, (0, 0.0))
            if now < next_try:
                continue
            error = load(self.http_url, name, self.admin_key)
            if error is None:
                if failures:
                    self.log(f"poll: '{name}' loaded after {failures} failed attempt(s)")
                self._failures.pop(name, None)
                continue
            pause = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
            self._failures[name] = (failures + 1, time.monotonic() + pause)
            self.log(f"poll: loading '{name}' failed (attempt {failures + 1}): {error}; retrying in {pause} s")
        self.polls += 1
        served = self._ready_versions()
        for name, version in sorted(served.items()):
            if self._served.get(name) != version:
                self.log(f"poll: '{name}' serves version {version}" + (" (new model)" if name not in self._served else ""))
        self._served = served
