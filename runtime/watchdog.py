"""Bring back a Python model whose stub died.

Triton 24.10 does not restart a dead Python backend stub (restart was removed
in python_backend 24.06): every request on that instance then fails with
"Stub process ... is not healthy" while the model still reports READY. The
backend only reaps a stub when its instance is destroyed, so a stub that died
stays a zombie child of tritonserver until then: that is the signal. The
watchdog reloads that model alone through Triton's model-control API
(explicit mode; a load of a loaded model replaces it in place)."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from runtime import procfs

STUB_BINARY = "triton_python_backend_stub"


@dataclass(frozen=True)
class Stub:
    pid: int
    model: str
    instance: str
    zombie: bool


def _stub_identity(pid: int) -> tuple[str, str] | None:
    """(model, instance) from a live stub's command line: the model file
    (<repository>/<model>/<version>/<file>) and the instance name."""
    argv = procfs.cmdline(pid)
    if not argv or len(argv) < 9 or not argv[0].endswith(STUB_BINARY):
        return None
    return Path(argv[1]).parents[1].name, argv[8]


def server_stubs(server_pid: int, known: dict[int, tuple[str, str]]) -> list[Stub]:
    """The stub children of a tritonserver process. A zombie has no command
    line any more: its identity comes from `known` (pid -> (model, instance)),
    which this call keeps up to date."""
    stubs = []
    for pid, found in procfs.children(server_pid).items():
        zombie = found.state == "Z"
        if not zombie and pid not in known:
            identity = _stub_identity(pid)
            if identity is None:
                continue
            known[pid] = identity
        if pid in known:
            stubs.append(Stub(pid, *known[pid], zombie=zombie))
    alive = {stub.pid for stub in stubs}
    for pid in [pid for pid in known if pid not in alive]:
        del known[pid]
    return stubs


def stubs_started_by(server_pid: int) -> list[int]:
    """Live stubs whose command line names `server_pid` as their parent, also
    once tritonserver has exited and they were reparented (a stub of a version
    that never finished unloading outlives the server)."""
    found = []
    for pid in procfs.pids():
        argv = procfs.cmdline(pid)
        if argv and len(argv) > 5 and argv[0].endswith(STUB_BINARY) and argv[5] == str(server_pid):
            found.append(pid)
    return found


class StubWatchdog:
    """Polls a tritonserver's stubs; a stub seen dead on two polls in a row
    (a stub exiting on a deliberate unload is reaped at once) gets its model
    reloaded. `log` receives one line per event."""

    def __init__(self, server_pid: int, http_url: str, admin_key: str | None, log: Callable[[str], None] = print, interval: float = 0.5):
        self.server_pid = server_pid
        self.http_url = http_url
        self.admin_key = admin_key
        self.log = log
        self.interval = interval
        self.recoveries: list[dict] = []  # {"model", "instance", "pid", "seconds", "ok"} per reload
        self._known: dict[int, tuple[str, str]] = {}
        self._handled: set[int] = set()  # zombie pids already acted on
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "StubWatchdog":
        # Learn the stubs now: a stub that dies before the first poll is a
        # zombie without a command line, which nothing could name any more.
        server_stubs(self.server_pid, self._known)
        self._thread = threading.Thread(target=self._run, name="stub-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)

    def _run(self) -> None:
        suspects: set[int] = set()
        while not self._stop.wait(self.interval):
            stubs = server_stubs(self.server_pid, self._known)
            self._handled &= {s.pid for s in stubs}  # reaped pids may be reused
            dead = [s for s in stubs if s.zombie and s.pid not in self._handled]
            confirmed = [s for s in dead if s.pid in suspects]
            suspects = {s.pid for s in dead}
            for model in sorted({s.model for s in confirmed}):
                stubs = [s for s in confirmed if s.model == model]
                self._handled.update(s.pid for s in stubs)
                if not self._stop.is_set():
                    self._recover(model, stubs)

    def _recover(self, model: str, stubs: list[Stub]) -> None:
        which = ", ".join(f"{s.instance} pid {s.pid}" for s in stubs)
        self.log(f"watchdog: stub of model '{model}' died ({which}); reloading '{model}'")
        started = time.monotonic()
        error = reload_model(self.http_url, model, self.admin_key)
        seconds = time.monotonic() - started
        if error is None:
            self.log(f"watchdog: model '{model}' reloaded in {seconds:.1f} s")
        else:
            self.log(f"watchdog: reloading model '{model}' failed after {seconds:.1f} s: {error}")
        self.recoveries.append({"model": model, "instances": [s.instance for s in stubs], "seconds": seconds, "ok": error is None})


def admin_request(http_url: str, path: str, admin_key: str | None, timeout: float = 300.0) -> tuple[int, bytes]:
    """POST to a (possibly restricted) admin endpoint: (status, body)."""
    request = urllib.request.Request(f"http://{http_url}{path}", data=b"{}", method="POST")
    if admin_key:
        request.add_header("admin-key", admin_key)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def reload_model(http_url: str, model: str, admin_key: str | None) -> str | None:
    """Unload then load one model (not the models using it); None on success,
    else the server's message."""
    for action in ("unload", "load"):
        try:
            status, body = admin_request(http_url, f"/v2/repository/models/{model}/{action}", admin_key)
        except OSError as error:
            return f"{action}: {error}"
        if status != 200:
            return f"{action}: HTTP {status}: {body.decode(errors='replace')}"
    return None
