"""The faults `make soak` injects while its traffic runs, and what each cost.

A fault is injected at a planned share of the run: a stub killed (kill -9),
a stub hung (kill -STOP), a model reloaded through the admin API, a new
version published into a repository the server polls. The launcher's
supervisor (watchdog and poller, runtime/supervisor.py) must bring the
server back on its own; the fault's window runs from the injection until
the recovery is seen (reload logged, new version served). A request that
failed inside the window of a fault on a model its pipeline uses was lost to
that fault; the target is to lose at most the requests that were in flight
at the moment of the fault, and nothing outside the windows."""

from __future__ import annotations

import os
import re
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from runtime import procfs
from runtime.paths import MODEL_REPOSITORY, TEST_REPOSITORY
from runtime.triton_api import repository_index
from runtime.watchdog import reload_model, server_stubs
from testsets.entries import Entry

PUBLISH_MODEL = "soak_publish"
GRACE_S = 2.0
"""A request that ended this soon after a recovery was seen may still have met the fault."""
RECOVERY_TIMEOUT_S = 180.0
# (kind, target model, share of the run)
DEFAULT_PLAN = (
    ("kill -9", "text_encoder", 0.15),
    ("kill -STOP", "clip_tokenizer", 0.30),
    ("reload", "vit_model", 0.45),
    ("publish", PUBLISH_MODEL, 0.60),
    ("kill -9", "stable_diffusion", 0.75),
)
SIGNALS = {"kill -9": signal.SIGKILL, "kill -STOP": signal.SIGSTOP}
SD_NETWORKS = ("sd_text_encoder", "sd_unet", "sd_vae_decoder")
BLS_CALLS = {"stable_diffusion": SD_NETWORKS, "stable_diffusion_stream": SD_NETWORKS}
"""Models a Python model calls that its configuration does not name."""


@dataclass
class Fault:
    kind: str
    target: str
    share: float
    affected: set[str] = field(default_factory=set)
    """Entry models whose requests go through the target."""
    started: float | None = None  # time.monotonic()
    at_s: float = 0.0  # seconds into the run
    recovered: float | None = None
    detail: str = ""
    in_flight: int = 0
    lost: int = 0

    @property
    def window_s(self) -> float | None:
        return None if self.started is None or self.recovered is None else self.recovered - self.started

    def covers(self, model: str, sent: float, done: float) -> bool:
        end = (self.recovered or float("inf")) + GRACE_S
        return self.started is not None and model in self.affected and sent <= end and done >= self.started


def publish_model(repo: Path) -> Path:
    """An instant identity (x -> y, FP32) that the publish fault gives a
    second version: tests/model_repository/queue_probe without its delay."""
    folder = repo / PUBLISH_MODEL
    shutil.copytree(TEST_REPOSITORY / "queue_probe", folder, ignore=shutil.ignore_patterns("__pycache__"))
    text = (folder / "config.pbtxt").read_text()
    text = text.replace('name: "queue_probe"', f'name: "{PUBLISH_MODEL}"').replace('string_value: "0.3"', 'string_value: "0"')
    (folder / "config.pbtxt").write_text(text.replace("max_queue_size: 3", "max_queue_size: 256"))
    return folder


def publish_entry() -> Entry:
    def good(i: int) -> dict[str, np.ndarray]:
        return {"x": np.full((1, 4), float(i), np.float32)}

    return Entry(PUBLISH_MODEL, good, (), {"x": np.zeros((1, 4), np.int32)}, "x")


def with_callees(models, repository: Path = MODEL_REPOSITORY) -> list[str]:
    """`models` and, repeatedly, the models of `repository` they name
    (ensemble steps, parameters), that name them in `called_by`, or that
    their code calls (BLS_CALLS)."""
    configs = {c.parent.name: c.read_text() for c in repository.glob("*/config.pbtxt")}
    found, todo = set(), list(models)
    while todo:
        model = todo.pop()
        if model in found or model not in configs:
            continue
        found.add(model)
        named = set(re.findall(r'model_name: "(\w+)"', configs[model])) | set(re.findall(r'string_value: "(\w+)"', configs[model]))
        todo += [m for m in named | set(BLS_CALLS.get(model, ())) if m in configs]
        todo += [other for other, text in configs.items() if re.search(rf'key: "called_by" value: \{{ string_value: "[^"]*\b{model}\b', text)]
    return sorted(found)


def pipeline_users(entries: list[str], repository: Path = MODEL_REPOSITORY) -> dict[str, set[str]]:
    """Model -> the entry models whose requests run it (themselves, their
    ensemble steps and the models they call, at any depth)."""
    users: dict[str, set[str]] = {}
    for entry in entries:
        for model in with_callees([entry], repository) or [entry]:
            users.setdefault(model, set()).add(entry)
    return users


class FaultInjector:
    """Runs the plan against a server and its supervisor while the traffic runs."""

    def __init__(self, plan, server, supervisor, publish_repo: Path, users: dict[str, set[str]], log: Callable[[str], None] = print):
        self.faults = [Fault(kind, target, share, users.get(target, {target})) for kind, target, share in plan]
        self.server = server
        self.supervisor = supervisor
        self.publish_repo = publish_repo
        self.log = log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, started: float, duration_s: float) -> "FaultInjector":
        self._run_started = started
        self._thread = threading.Thread(target=self._run, args=(started, duration_s), name="soak-faults", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=RECOVERY_TIMEOUT_S)

    def _run(self, started: float, duration_s: float) -> None:
        for fault in self.faults:
            if self._stop.wait(max(0.0, started + fault.share * duration_s - time.monotonic())):
                return
            try:
                self._inject(fault)
            except Exception as error:  # noqa: BLE001 - a fault that could not be injected is reported, the soak goes on
                fault.detail = f"not injected: {type(error).__name__}: {error}"
            self.log(f"soak: fault {fault.kind} {fault.target}: {fault.detail}")

    def _inject(self, fault: Fault) -> None:
        recoveries_before = len(self.supervisor.recoveries)
        fault.started = time.monotonic()
        fault.at_s = fault.started - self._run_started
        if fault.kind in SIGNALS:
            stub = next(s for s in server_stubs(self.server.process.pid) if s.model == fault.target and not s.zombie)
            os.kill(stub.pid, SIGNALS[fault.kind])
            fault.detail = f"{stub.instance} (pid {stub.pid})"
            self._wait(lambda: any(r.model == fault.target and r.ok for r in self.supervisor.recoveries[recoveries_before:]), fault)
            if fault.recovered is None:
                found = procfs.stat(stub.pid)
                seen = [f"{r.reason}, {r.attempts} tries: {r.errors[-1:]}" for r in self.supervisor.recoveries[recoveries_before:] if r.model == fault.target]
                fault.detail += f"; the stub is {'gone (reaped)' if found is None else f'in state {found.state}'}; the watchdog's recoveries of it: {seen or 'none'}"
        elif fault.kind == "reload":
            error = reload_model(self.server.http_url, fault.target, self.server.admin_key)
            fault.recovered = time.monotonic()
            fault.detail = error or "new instances swapped in"
        elif fault.kind == "publish":
            version = self._publish(fault.target)
            self._wait(lambda: self._serves(fault.target, version), fault)
        else:
            raise ValueError(f"unknown fault {fault.kind!r}")
        if fault.recovered is not None and not fault.detail.startswith("not"):
            fault.detail += f"; recovered after {fault.window_s:.1f} s"

    def _wait(self, recovered: Callable[[], bool], fault: Fault) -> None:
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while time.monotonic() < deadline and not self._stop.is_set():
            if recovered():
                fault.recovered = time.monotonic()
                return
            time.sleep(0.1)
        fault.detail += f"; NOT recovered {time.monotonic() - fault.started:.0f} s after it" + (" (the run ended)" if self._stop.is_set() else "")

    def _publish(self, model: str) -> str:
        folder = self.publish_repo / model
        version = str(max(int(p.name) for p in folder.iterdir() if p.name.isdigit()) + 1)
        shutil.copytree(folder / "1", folder / f".{version}.partial", ignore=shutil.ignore_patterns("__pycache__"))
        (folder / f".{version}.partial").rename(folder / version)  # whole, as a publish is
        return version

    def _serves(self, model: str, version: str) -> bool:
        index = repository_index(self.server.http_url, self.server.admin_key)
        return any(m["name"] == model and m.get("version") == version and m.get("state") == "READY" for m in index)


def attribute(faults: list[Fault], records: list[tuple]) -> list[int]:
    """Counts each fault's requests in flight at its moment and the failed
    requests it explains; returns the indexes of failures no fault explains.
    records: (model, sent, done, outcome) with outcome "answer", "refused",
    "bad_refused", "unexpected" or "unanswered"."""
    unexplained = []
    for fault in faults:
        fault.in_flight = sum(m in fault.affected and s <= fault.started < d for m, s, d, _ in records) if fault.started else 0
        fault.lost = 0
    for index, (model, sent, done, outcome) in enumerate(records):
        if outcome not in ("unexpected", "unanswered"):
            continue
        fault = next((f for f in faults if f.covers(model, sent, done)), None)
        if fault is None:
            unexplained.append(index)
        else:
            fault.lost += 1
    return unexplained
