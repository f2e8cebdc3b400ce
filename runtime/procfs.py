"""What the launcher, the watchdog, the soak and the benchmarks read from
/proc about a process: its name, state and parent, its command line, its CPU
time and its children. Every reader returns None (or skips the process) once
the process is gone: /proc entries vanish at any moment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessStat:
    name: str  # the command name (comm), at most 15 characters
    state: str  # "R", "S", "Z" (zombie), ...
    ppid: int
    cpu_seconds: float  # user + system, all threads


def stat(pid: int) -> ProcessStat | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the name is in parentheses and may itself hold spaces or ')'
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text.rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ProcessStat(name, fields[0], int(fields[1]), ticks / os.sysconf("SC_CLK_TCK"))


def cpu_seconds(pid: int) -> float | None:
    """CPU time a live process has used; None once it is gone."""
    found = stat(pid)
    return found.cpu_seconds if found else None


def cmdline(pid: int) -> list[str] | None:
    """The arguments of a live process ([] for a zombie); None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.decode(errors="replace").split("\0")[:-1] if raw else []


def pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def children(parent: int, name: str | None = None) -> dict[int, ProcessStat]:
    """pid -> stat of the processes whose parent is `parent` (and whose
    command name is `name`)."""
    found = {}
    for pid in pids():
        child = stat(pid)
        if child and child.ppid == parent and (name is None or child.name == name):
            found[pid] = child
    return found
