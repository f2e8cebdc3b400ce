"""What a stub is busy with, for the launcher's watchdog (runtime/watchdog.py).

A stub that hangs in a model's code (a deadlock, an endless loop, a read that
never returns) stays alive and healthy to Triton, and the request it holds
waits for ever. The watchdog tells it from a busy stub by how long its oldest
unfinished piece of work (an execute, or a streamed request's thread) has run:
each stub keeps that start time, as seconds since the epoch (0.0: idle), in
a small file `<dir>/<pid>` that the watchdog reads. The launcher names the
folder in $TRITON_PIPELINES_PROGRESS_DIR; without it (tests in process, a
server started by hand) nothing is written.

Past the model's execution bound the watchdog writes the bound into the file
and sends INTERRUPT_SIGNAL: an execute running in the stub's main thread is
interrupted with ExecutionBoundExceeded, which fails its requests with a
message saying so (a clear timeout error, not a hang); a stub that cannot be
interrupted (stopped, stuck in native code) is killed by the watchdog."""

from __future__ import annotations

import mmap
import os
import signal
import struct
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PROGRESS_DIR_ENV = "TRITON_PIPELINES_PROGRESS_DIR"
RECORD = struct.Struct("<dd")
"""(oldest work's start, 0.0 when idle; the bound the watchdog interrupted it at)."""
FIELD = struct.Struct("<d")
INTERRUPT_SIGNAL = signal.SIGUSR2
MIN_INTERRUPTED_AGE_S = 1.0
"""An interrupt meets an execute at least this old, never one just begun."""


class ExecutionBoundExceeded(TimeoutError):
    pass


class Progress:
    """The start time of the oldest work in progress, kept in a small
    memory-mapped file (a write is a store to memory, no system call)."""

    def __init__(self, path: Path | None):
        self._running: dict[int, float] = {}
        self._lock = threading.Lock()
        self._next = 0
        self._main_started: float | None = None  # the main thread's work, the one a signal can interrupt
        self._map: mmap.mmap | None = None
        if path is not None:
            with open(path, "w+b") as handle:
                handle.write(RECORD.pack(0.0, 0.0))
                handle.flush()
                self._map = mmap.mmap(handle.fileno(), RECORD.size)
            if threading.current_thread() is threading.main_thread():
                signal.signal(INTERRUPT_SIGNAL, self._interrupt)

    @contextmanager
    def running(self) -> Iterator[None]:
        main = threading.current_thread() is threading.main_thread()
        with self._lock:
            token, self._next = self._next, self._next + 1
            self._running[token] = started = time.time()
            self._publish()
        if main:
            self._main_started = started
        try:
            yield
        finally:
            if main:
                self._main_started = None
            with self._lock:
                del self._running[token]
                self._publish()

    def _publish(self) -> None:
        if self._map is not None:
            self._map[: FIELD.size] = FIELD.pack(min(self._running.values(), default=0.0))

    def _interrupt(self, signum, frame) -> None:
        started = self._main_started
        if started is None or time.time() - started < MIN_INTERRUPTED_AGE_S:
            return  # the overrunning work ended meanwhile
        bound = RECORD.unpack(self._map[:])[1] if self._map is not None else 0.0
        raise ExecutionBoundExceeded(
            f"execution bound of {bound:.0f} s exceeded after {time.time() - started:.0f} s: stopped by the server's watchdog "
            "(the model is being reloaded)"
        )


_STUB_PROGRESS: Progress | None = None


def stub_progress() -> Progress:
    """This process's Progress (one stub runs one model instance)."""
    global _STUB_PROGRESS
    if _STUB_PROGRESS is None:
        folder = os.environ.get(PROGRESS_DIR_ENV)
        _STUB_PROGRESS = Progress(Path(folder) / str(os.getpid()) if folder and Path(folder).is_dir() else None)
    return _STUB_PROGRESS


def busy_since(path: Path) -> float | None:
    """What a stub's file says: when its oldest work began (0.0: idle); None
    when there is no such file."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return RECORD.unpack(data[: RECORD.size])[0] if len(data) >= RECORD.size else None


def interrupt(path: Path, pid: int, bound_s: float) -> bool:
    """Ask stub `pid` to stop its overrunning execute (its file records the
    bound for the message); False when the stub is gone."""
    try:
        with open(path, "r+b") as handle:
            handle.seek(FIELD.size)
            handle.write(FIELD.pack(bound_s))
        os.kill(pid, INTERRUPT_SIGNAL)
    except (OSError, ProcessLookupError):
        return False
    return True
