"""What keeps a running tritonserver whole, for the launcher (`make serve`,
the container, the Kubernetes and KServe manifests) and the soak: the stub
watchdog (runtime/watchdog.py), the repository poller (runtime/poller.py)
and, at the end, the drain (runtime/drain.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from runtime.drain import Drain
from runtime.poller import RepositoryPoller
from runtime.watchdog import StubWatchdog


class Supervisor:
    def __init__(
        self,
        server_pid: int,
        http_url: str,
        metrics_url: str,
        admin_key: str | None,
        progress_dir: Path | None,
        poll_secs: float | None = None,
        watchdog: bool = True,
        log: Callable[[str], None] = print,
    ):
        self.watchdog = StubWatchdog(server_pid, http_url, admin_key, log=log, progress_dir=progress_dir) if watchdog else None
        self.poller = RepositoryPoller(http_url, admin_key, poll_secs, log=log) if poll_secs else None
        self.drainer = Drain(http_url, metrics_url, admin_key, progress_dir, log=log)
        self.drained: bool | None = None  # None: no drain ran

    def start(self) -> "Supervisor":
        for part in (self.watchdog, self.poller):
            if part is not None:
                part.start()
        return self

    def stop(self) -> None:
        """Stop watching: stubs exiting on shutdown are not deaths to recover from."""
        for part in (self.poller, self.watchdog):
            if part is not None:
                part.stop()

    def drain(self, grace_s: float) -> bool:
        self.stop()
        self.drained = self.drainer.run(grace_s)
        return self.drained

    @property
    def recoveries(self) -> list:
        return self.watchdog.recoveries if self.watchdog else []
