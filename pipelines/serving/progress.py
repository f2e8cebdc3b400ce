"""What a stub is busy with, for the launcher's watchdog (runtime/watchdog.py).

A stub that hangs in a model's code (a deadlock, an endless loop, a read that
never returns) stays alive and healthy to Triton, and the request it holds
waits for ever. The watchdog tells it from a busy stub by how long its oldest
unfinished piece of work (an execute, or a streamed request's thread) has run:
each stub keeps that start time, as seconds since the epoch (0.0: idle), in
an 8-byte file `<dir>/<pid>` that the launcher's watchdog reads. The launcher
names the folder in $TRITON_PIPELINES_PROGRESS_DIR; without it (tests in
process, a server started by hand) nothing is written."""

from __future__ import annotations

import mmap
import os
import struct
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PROGRESS_DIR_ENV = "TRITON_PIPELINES_PROGRESS_DIR"
RECORD = struct.Struct("<d")


class Progress:
    """The start time of the oldest work in progress, kept in a small
    memory-mapped file (a write is a store to memory, no system call)."""

    def __init__(self, path: Path | None):
        self._running: dict[int, float] = {}
        self._lock = threading.Lock()
        self._next = 0
        self._map: mmap.mmap | None = None
        if path is not None:
            with open(path, "w+b") as handle:
                handle.write(RECORD.pack(0.0))
                handle.flush()
                self._map = mmap.mmap(handle.fileno(), RECORD.size)

    @contextmanager
    def running(self) -> Iterator[None]:
        with self._lock:
            token, self._next = self._next, self._next + 1
            self._running[token] = time.time()
            self._publish()
        try:
            yield
        finally:
            with self._lock:
                del self._running[token]
                self._publish()

    def _publish(self) -> None:
        if self._map is not None:
            self._map[:] = RECORD.pack(min(self._running.values(), default=0.0))


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
