"""Bring back a Python model whose stub died or hung.

Triton 24.10 does not restart a dead Python backend stub (restart was removed
in python_backend 24.06): every request on that instance then fails with
"Stub process ... is not healthy" while the model still reports READY. The
backend only reaps a stub when its instance is destroyed, so a stub that died
stays a zombie child of tritonserver until then: that is the signal. A stub
that hangs stays alive: stopped (kill -STOP, a debugger: state T), or stuck in
a model's code, which its progress file shows (pipelines/serving/progress.py:
its oldest work running longer than the model's execution bound,
runtime/bounds.py). A hung stub is killed, then handled as a dead one.

Recovery reloads that model alone through Triton's model-control API
(explicit mode) with its own configuration plus a marker parameter: a load
with a changed configuration builds new instances while the old ones serve,
then swaps them (a bare load of unchanged files is skipped by Triton, and an
unload first would refuse every request until the load ends). A failed
reload is retried with backoff, each try reported."""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pipelines.serving.progress import busy_since, interrupt
from runtime import procfs
from runtime.bounds import execution_bound_s
from runtime.triton_api import TritonApiError, load, model_config

STUB_BINARY = "triton_python_backend_stub"


@dataclass(frozen=True)
class Stub:
    pid: int
    model: str
    instance: str
    zombie: bool
    region: str = ""
    """Its shared-memory region (/dev/shm/<region>); unknown for a zombie."""


def _live_stub(pid: int, server_pid: int) -> Stub | None:
    """The stub `pid` if it is a live stub of `server_pid`: its command line
    is <stub> <model file> <shm region> <size> <growth> <parent pid> <lib>
    <ipc> <instance> ..., the model file <repository>/<model>/<version>/<file>."""
    argv = procfs.cmdline(pid)
    if not argv or len(argv) < 9 or not argv[0].endswith(STUB_BINARY) or argv[5] != str(server_pid):
        return None
    return Stub(pid, Path(argv[1]).parents[1].name, argv[8], zombie=False, region=argv[2])


def server_stubs(server_pid: int, known: dict[int, tuple[str, str]] | None = None) -> list[Stub]:
    """The Python stubs a tritonserver started: the live ones (found by the
    server's pid in their command line, so also once the server has exited
    and they were reparented) and the dead ones it has not reaped yet. A
    zombie has no command line any more: its identity comes from `known`
    (pid -> (model, instance)), which this call keeps up to date."""
    known = {} if known is None else known
    stubs = []
    for pid in procfs.pids():
        stub = _live_stub(pid, server_pid)
        if stub is None and pid in known:
            found = procfs.stat(pid)
            if found is not None and found.state == "Z" and found.ppid == server_pid:
                stub = Stub(pid, *known[pid], zombie=True)
        if stub is not None:
            known[pid] = (stub.model, stub.instance)
            stubs.append(stub)
    found_pids = {stub.pid for stub in stubs}
    for pid in [pid for pid in known if pid not in found_pids]:
        del known[pid]
    return stubs


RELOAD_PARAMETER = "reloaded_by_watchdog"
"""Set to the reload's time in the configuration a recovery loads: a changed
configuration is what makes Triton build new instances."""
BACKOFF_S = (1, 2, 4, 8, 16, 32, 60)
BOUND_LOOKUP_TIMEOUT_S = 3.0
INTERRUPT_GRACE_S = 2.0
"""How long an interrupted stub has to end its overrunning work before it is killed."""


def reload_model(http_url: str, model: str, admin_key: str | None) -> str | None:
    """New instances of one model (not of the models using it) built while the
    old ones serve; None on success, else the server's message."""
    try:
        config = model_config(http_url, model, admin_key)
    except TritonApiError as error:
        return str(error)
    config.setdefault("parameters", {})[RELOAD_PARAMETER] = {"string_value": f"{time.time():.3f}"}
    return load(http_url, model, admin_key, config=config)


@dataclass
class Recovery:
    model: str
    instances: list[str]
    reason: str  # "died", "stopped", "was interrupted at its execution bound", ...
    seconds: float = 0.0
    attempts: int = 0
    ok: bool = False
    errors: list[str] = field(default_factory=list)


class StubWatchdog:
    """Polls a tritonserver's stubs every `interval` seconds. A stub seen dead
    on two polls in a row (a stub exiting on a deliberate unload is reaped at
    once), or stopped on two polls in a row, or busy past its model's
    execution bound, gets its model reloaded (a hung stub is killed first).
    `progress_dir`: where the stubs keep their progress files (None: no
    execution bound is checked). `log` receives one line per event."""

    def __init__(
        self,
        server_pid: int,
        http_url: str,
        admin_key: str | None,
        log: Callable[[str], None] = print,
        interval: float = 0.5,
        progress_dir: Path | None = None,
    ):
        self.server_pid = server_pid
        self.http_url = http_url
        self.admin_key = admin_key
        self.log = log
        self.interval = interval
        self.progress_dir = progress_dir
        self.recoveries: list[Recovery] = []
        self._known: dict[int, tuple[str, str]] = {}
        self._handled: set[int] = set()  # pids already acted on
        self._bounds: dict[str, float] = {}
        self._interrupted: dict[int, float] = {}  # pid -> when its overrunning work was interrupted
        self._reloading: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> "StubWatchdog":
        # Learn the stubs now: a stub that dies before the first poll is a
        # zombie without a command line, which nothing could name any more.
        server_stubs(self.server_pid, self._known)
        self._spawn(self._run, "stub-watchdog")
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(timeout=120)

    def _spawn(self, target, name: str, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _run(self) -> None:
        dead_suspects: set[int] = set()
        stopped_suspects: set[int] = set()
        while not self._stop.wait(self.interval):
            stubs = server_stubs(self.server_pid, self._known)
            self._handled &= {s.pid for s in stubs}  # reaped pids may be reused
            fresh = [s for s in stubs if s.pid not in self._handled]
            dead = [s for s in fresh if s.zombie]
            stopped = [s for s in fresh if not s.zombie and _is_stopped(s.pid)]
            self._act([s for s in dead if s.pid in dead_suspects], "died")
            self._act([s for s in stopped if s.pid in stopped_suspects], "stopped", kill=True)
            self._handle_overruns([s for s in fresh if not s.zombie and s not in stopped])
            dead_suspects, stopped_suspects = {s.pid for s in dead}, {s.pid for s in stopped}
            self._forget_progress_files({s.pid for s in stubs})

    def _overrunning(self, live: list[Stub]) -> dict[int, Stub]:
        if self.progress_dir is None:
            return {}
        now, found = time.time(), {}
        for stub in live:
            since = busy_since(self.progress_dir / str(stub.pid))
            if since and now - since > self._bound(stub.model):
                found[stub.pid] = stub
        return found

    def _handle_overruns(self, live: list[Stub]) -> None:
        """Work past its bound is interrupted (its requests fail with a clear
        timeout error); a stub that has not ended it INTERRUPT_GRACE_S later
        is killed. Either way its model is reloaded."""
        now = time.monotonic()
        over = self._overrunning(live)
        for pid, stub in over.items():
            if pid not in self._interrupted:
                self._interrupted[pid] = now
                bound = self._bound(stub.model)
                self.log(f"watchdog: {stub.instance} (pid {pid}) is busy past the execution bound of '{stub.model}' ({bound:.0f} s); interrupting it")
                interrupt(self.progress_dir / str(pid), pid, bound)
        live_by_pid = {s.pid: s for s in live}
        ended, stuck = [], []
        for pid, when in list(self._interrupted.items()):
            if pid not in live_by_pid:
                del self._interrupted[pid]  # it died: handled as a death
            elif pid not in over:
                ended.append(live_by_pid.pop(pid))
                del self._interrupted[pid]
            elif now - when >= INTERRUPT_GRACE_S:
                stuck.append(live_by_pid.pop(pid))
                del self._interrupted[pid]
        self._act(ended, "was interrupted at its execution bound")
        self._act(stuck, "went past its execution bound and could not be interrupted", kill=True)

    def _bound(self, model: str) -> float:
        if model not in self._bounds:
            try:
                # briefly: this runs in the polling loop, which must not stall behind a busy server
                self._bounds[model] = execution_bound_s(model_config(self.http_url, model, self.admin_key, timeout=BOUND_LOOKUP_TIMEOUT_S))
            except TritonApiError:
                return float("inf")  # the model is being replaced; the next poll asks again
        return self._bounds[model]

    def _forget_progress_files(self, stub_pids: set[int]) -> None:
        if self.progress_dir is None:
            return
        for path in self.progress_dir.iterdir():
            if path.name.isdigit() and int(path.name) not in stub_pids and not os.path.exists(f"/proc/{path.name}"):
                path.unlink(missing_ok=True)

    def _act(self, stubs: list[Stub], reason: str, kill: bool = False) -> None:
        """Reload the models of `stubs`; `kill`: end them first (a hung stub
        holds its requests, which then fail at once)."""
        for model in sorted({s.model for s in stubs}):
            of_model = [s for s in stubs if s.model == model]
            self._handled.update(s.pid for s in of_model)
            if kill:
                for stub in of_model:
                    _kill(stub.pid)
            with self._lock:
                if model in self._reloading or self._stop.is_set():
                    continue  # the reload under way replaces these instances too
                self._reloading.add(model)
            which = ", ".join(f"{s.instance} pid {s.pid}" for s in of_model)
            self.log(f"watchdog: stub of model '{model}' {reason} ({which}); reloading '{model}'")
            recovery = Recovery(model, [s.instance for s in of_model], reason)
            self.recoveries.append(recovery)
            self._spawn(self._recover, f"reload-{model}", recovery)

    def _recover(self, recovery: Recovery) -> None:
        started = time.monotonic()
        pauses = itertools.chain((0,), BACKOFF_S, itertools.repeat(BACKOFF_S[-1]))  # then once a minute
        try:
            for attempt, pause in enumerate(pauses, start=1):
                if self._stop.wait(pause):
                    return
                recovery.attempts = attempt
                error = reload_model(self.http_url, recovery.model, self.admin_key)
                recovery.seconds = time.monotonic() - started
                if error is None:
                    recovery.ok = True
                    self._bounds.pop(recovery.model, None)
                    self.log(f"watchdog: model '{recovery.model}' reloaded in {recovery.seconds:.1f} s")
                    return
                recovery.errors = [*recovery.errors[-9:], error]
                retry = BACKOFF_S[min(attempt - 1, len(BACKOFF_S) - 1)]
                self.log(f"watchdog: reloading model '{recovery.model}' failed (attempt {attempt}, after {recovery.seconds:.1f} s): "
                         f"{error}; retrying in {retry} s")
        finally:
            with self._lock:
                self._reloading.discard(recovery.model)


def _is_stopped(pid: int) -> bool:
    found = procfs.stat(pid)
    return found is not None and found.state in ("T", "t")


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
