"""Soak: mixed traffic over every entry model for minutes, against a
tritonserver of its own run as the launcher runs it (watchdog and repository
poller), over HTTP and gRPC, with a few percent bad inputs and, by default,
faults injected along the way (perf/soak_faults.py: stub kills, a hung stub,
a model reload, a publish picked up by polling).

`make soak` (`python -m perf.soak --minutes 10 --concurrency 32`) writes
`perf/results/soak.md` and `soak.png`. Every answer is checked: a good
request must get the answer it got alone (or a refusal: queue full, queue
timeout), a bad one a refusal naming its tensor; anything else is an
unexpected error, unless it fell in the window of a fault on a model its
pipeline uses (then it was lost to that fault). Server and stub RSS and the
Python backend's shared-memory regions are sampled over time. Targets: 0
unexpected errors outside the fault windows, at most the requests in flight
at each fault lost to it, no request unanswered, RSS after warm-up growing by
at most 10%, every region gone after shutdown."""

from __future__ import annotations

import argparse
import os
import queue
import random
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from clients.common import make_inputs
from perf.report import RESULTS_DIR, machine
from perf.soak_faults import DEFAULT_PLAN, Fault, FaultInjector, attribute, pipeline_users, publish_entry, publish_model, with_callees
from runtime.paths import MODEL_REPOSITORY
from runtime.server import TritonServer, resolve_preload
from runtime.supervisor import Supervisor
from runtime.watchdog import Stub, server_stubs
from testsets.entries import Entry, Tensors, entries

# Relative share of requests per model: an OCR request costs a thousand times
# a text request (both cores for seconds), so it gets few, or the clients all
# end up waiting on OCR and the other models see little traffic.
WEIGHTS = {
    "ocr": 0.25, "ocr_bls": 0.25, "vit_python": 1, "orientation": 3, "vit": 3, "clip_image_embedding": 3,
    "stable_diffusion": 0.5, "stable_diffusion_stream": 0.5,
}
SD_STEPS = 4
"""Denoising steps of a soak Stable Diffusion request (the test checkpoint is small)."""
SD_PIXEL_TOLERANCE = 2
"""Batched sd_unet calls against alone: a picture may move by rounding, as in tests/test_stable_diffusion.py."""
DEFAULT_WEIGHT = 4
GOOD_POOL = 4
"""Distinct good requests per model, each answered alone first (the reference)."""
REFUSALS = ("Exceeds maximum queue size", "Request timeout expired")
"""What an overloaded server answers, by design: expected, not a failure."""
ATOL = 1e-4
"""Batched against alone: the networks' float results may move by rounding."""
CLIENT_TIMEOUT_S = 120.0
"""A request without an answer by then counts as unanswered."""
RSS_GROWTH_LIMIT = 0.10


# ------------------------------------------------------------------ processes


def _status_kib(pid: int, key: str = "VmRSS") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def stubs_of(server_pid: int) -> dict[int, Stub]:
    """The server's live Python stubs by pid (runtime.watchdog.server_stubs)."""
    return {stub.pid: stub for stub in server_stubs(server_pid) if not stub.zombie}


def region_bytes(names) -> int:
    total = 0
    for name in names:
        try:
            total += os.stat(f"/dev/shm/{name}").st_size
        except OSError:
            pass
    return total


@dataclass
class Sample:
    seconds: float
    server_mib: float
    stubs_mib: float
    stubs: int
    shm_mib: float
    done: int
    rss_by_pid: dict[int, float] = field(default_factory=dict)
    """MiB of the server and of each stub, by pid."""


# ------------------------------------------------------------------ traffic


@dataclass
class ModelTally:
    requests: int = 0
    answers: int = 0
    refused: Counter = field(default_factory=Counter)
    bad_refused: int = 0
    unexpected: int = 0
    unanswered: int = 0
    latencies: list = field(default_factory=list)

    def percentile(self, q: float) -> float | None:
        return float(np.percentile(self.latencies, q)) * 1000 if self.latencies else None


def same_answer(want: dict[str, np.ndarray], got: dict[str, np.ndarray], pixel_tolerance: int = 0) -> str | None:
    """None if `got` is `want` (floats within ATOL, integers within
    `pixel_tolerance` for 99% of the values), else what differs."""
    if want.keys() != got.keys():
        return f"outputs {sorted(got)} instead of {sorted(want)}"
    for name, expected in want.items():
        value = got[name]
        if value.shape != expected.shape:
            return f"{name}: shape {value.shape} instead of {expected.shape}"
        if expected.dtype.kind in "fc":
            if not np.allclose(value, expected, rtol=0, atol=ATOL):
                return f"{name}: differs by {float(np.max(np.abs(value - expected))):.2e}"
        elif pixel_tolerance and expected.dtype.kind in "ui":
            near = np.abs(value.astype(np.int64) - expected.astype(np.int64)) <= pixel_tolerance
            if near.mean() < 0.99:
                return f"{name}: {1 - near.mean():.1%} of the values differ by more than {pixel_tolerance}"
        elif not np.array_equal(value, expected):
            return f"{name}: differs"
    return None


def sd_entry(model: str) -> Entry:
    """Stable Diffusion requests (testsets' entries leave them out): a short
    prompt, SD_STEPS steps, a seed per request; bad: steps out of range."""

    def request(i: int, steps: int = SD_STEPS) -> Tensors:
        return {
            "prompt": np.array([f"soak picture {i}".encode()], dtype=np.object_),
            "steps": np.array([steps], np.int32),
            "seed": np.array([i], np.int64),
        }

    return Entry(model, request, (("steps 0", request(0, steps=0), "must be 1 to 999"),), {**request(0), "steps": np.array([2.0], np.float32)}, "steps")


def soak_entries(names: list[str] | None = None) -> dict[str, Entry]:
    """The entry models the soak sends to (all, or those named)."""
    found = {**entries(), **{m: sd_entry(m) for m in ("stable_diffusion", "stable_diffusion_stream")}, publish_entry().model: publish_entry()}
    return {name: found[name] for name in (names or found)}


class Traffic:
    """Worker threads sending mixed requests until a deadline, each request
    checked, tallied per model and recorded (model, sent, done, outcome) for
    the faults' accounting."""

    def __init__(self, server: TritonServer, models: dict[str, Entry], bad_fraction: float, seed: int = 0):
        self.server = server
        self.models = models
        self.bad_fraction = bad_fraction
        self.names = sorted(models)
        self.weights = [WEIGHTS.get(n, DEFAULT_WEIGHT) for n in self.names]
        self.goods = {n: [e.good(i) for i in range(GOOD_POOL)] for n, e in models.items()}
        self.reference: dict[str, list[dict[str, np.ndarray]]] = {}
        self.tally: dict[str, ModelTally] = defaultdict(ModelTally)
        self.records: list[tuple[str, float, float, str]] = []
        self.notes: list[tuple[int, str]] = []  # (record index, what happened) of the unexpected and unanswered
        self.done = 0
        self.issued = 0
        self.lock = threading.Lock()
        self.seed = seed

    def clients(self):
        return (
            ("http", httpclient, httpclient.InferenceServerClient(self.server.http_url, network_timeout=CLIENT_TIMEOUT_S)),
            ("grpc", grpcclient, grpcclient.InferenceServerClient(self.server.grpc_url)),
        )

    def send(self, protocol: str, module, client, model: str, tensors: Tensors) -> dict[str, np.ndarray]:
        if model.endswith("_stream"):
            return self.send_stream(client, model, make_inputs(module, tensors))
        kwargs = {"client_timeout": CLIENT_TIMEOUT_S} if protocol == "grpc" else {}
        result = client.infer(model, make_inputs(module, tensors), **kwargs)
        names = [o.name for o in result.get_response().outputs] if protocol == "grpc" else [o["name"] for o in result.get_response()["outputs"]]
        return {name: result.as_numpy(name) for name in names}

    @staticmethod
    def send_stream(client, model: str, inputs: list) -> dict[str, np.ndarray]:
        """A decoupled request over a gRPC stream: its last response's outputs
        (the picture), once every step came."""
        answers: queue.Queue = queue.Queue()
        client.start_stream(callback=lambda result, error: answers.put((result, error)), stream_timeout=CLIENT_TIMEOUT_S)
        try:
            client.async_stream_infer(model, inputs)
            while True:
                result, error = answers.get(timeout=CLIENT_TIMEOUT_S)
                if error is not None:
                    raise error if isinstance(error, InferenceServerException) else InferenceServerException(str(error))
                outputs = {o.name: result.as_numpy(o.name) for o in result.get_response().outputs}
                if "generated_image" in outputs:
                    return {"generated_image": outputs["generated_image"]}
        except queue.Empty:
            raise InferenceServerException(f"stream timed out after {CLIENT_TIMEOUT_S:.0f} s") from None
        finally:
            client.stop_stream()

    def record_references(self) -> None:
        """Each good request alone over gRPC: the answers the soak must keep giving."""
        _, module, client = self.clients()[1]
        for name in self.names:
            self.reference[name] = [self.send("grpc", module, client, name, t) for t in self.goods[name]]

    def pick(self, rng: random.Random) -> tuple[str, tuple | None, int]:
        """(model, bad case or None, index of the good request)."""
        with self.lock:  # every model once first, then the weighted mix
            issued, self.issued = self.issued, self.issued + 1
        name = self.names[issued] if issued < len(self.names) else rng.choices(self.names, self.weights)[0]
        bad_cases = self.models[name].bad
        bad = bad_cases[rng.randrange(len(bad_cases))] if bad_cases and rng.random() < self.bad_fraction else None
        return name, bad, rng.randrange(GOOD_POOL)

    def one(self, rng: random.Random, pairs, turn: int) -> None:
        name, bad, index = self.pick(rng)
        # both protocols for every model; streams go over gRPC
        protocol, module, client = pairs[1] if name.endswith("_stream") else pairs[turn % 2]
        started = time.monotonic()
        outcome, detail = self.outcome(protocol, module, client, name, bad, index)
        self.record(name, protocol, bad, started, time.monotonic(), outcome, detail)

    def outcome(self, protocol: str, module, client, name: str, bad: tuple | None, index: int) -> tuple[str, str | None]:
        entry = self.models[name]
        try:
            got = self.send(protocol, module, client, name, bad[1] if bad else self.goods[name][index])
        except InferenceServerException as error:
            message = str(error)
            refusal = next((r for r in REFUSALS if r in message), None)
            if "Deadline" in message or "timed out" in message.lower():
                return "unanswered", message
            if refusal:
                return "refused", refusal
            if bad and bad[2] in message and entry.named in message:
                return "bad_refused", None
            return "unexpected", message
        except Exception as error:  # noqa: BLE001 - a broken connection is a finding, not a crash
            return "unanswered", f"{type(error).__name__}: {error}"
        if bad:
            return "unexpected", f"bad input '{bad[0]}' answered"
        problem = same_answer(self.reference[name][index], got, SD_PIXEL_TOLERANCE if name.startswith("stable_diffusion") else 0)
        return ("unexpected", f"wrong answer: {problem}") if problem else ("answer", None)

    def record(self, name: str, protocol: str, bad: tuple | None, started: float, ended: float, outcome: str, detail: str | None) -> None:
        with self.lock:
            tally = self.tally[name]
            tally.requests += 1
            self.done += 1
            self.records.append((name, started, ended, outcome))
            if outcome == "answer":
                tally.answers += 1
                tally.latencies.append(ended - started)
            elif outcome == "refused":
                tally.refused[detail] += 1
            elif outcome == "bad_refused":
                tally.bad_refused += 1
            else:
                if outcome == "unanswered":
                    tally.unanswered += 1
                else:
                    tally.unexpected += 1
                what = f"unanswered after {ended - started:.1f} s" if outcome == "unanswered" else ""
                self.notes.append((len(self.records) - 1, f"{name} over {protocol}{' (' + bad[0] + ')' if bad else ''}: {what} {detail}".strip()))

    def worker(self, number: int, deadline: float) -> None:
        rng = random.Random(self.seed * 1000 + number)
        pairs = self.clients()
        turn = number
        while time.monotonic() < deadline:
            turn += 1
            self.one(rng, pairs, turn)
        for _, _, client in pairs:
            client.close()


# ------------------------------------------------------------------ the run


@dataclass
class SoakResult:
    minutes: float
    concurrency: int
    bad_fraction: float
    preload: str | None
    tally: dict[str, ModelTally]
    samples: list[Sample]
    warmup_s: float
    shm_after_shutdown: int
    """Bytes left in the stubs' regions once the server stopped."""
    regions: int
    faults: list[Fault]
    unexplained: list[str]
    """The unexpected and unanswered requests no fault window explains."""
    unplanned: list[str]
    """Stubs the watchdog brought back that no fault had hit."""
    ready_at_end: bool
    wall_s: float = 0.0

    @property
    def requests(self) -> int:
        return sum(t.requests for t in self.tally.values())

    @property
    def unexpected(self) -> int:
        return sum(t.unexpected for t in self.tally.values())

    @property
    def unanswered(self) -> int:
        return sum(t.unanswered for t in self.tally.values())

    def survivors_mib(self, sample: Sample) -> float:
        """RSS of the server and the stubs that lived through the whole run after
        warm-up: a stub a fault replaced is a new process, its memory no growth."""
        after = [s.rss_by_pid for s in self.samples if s.seconds >= self.warmup_s]
        lived = set.intersection(*(set(pids) for pids in after)) if after else set()
        return sum(mib for pid, mib in sample.rss_by_pid.items() if pid in lived)

    def after_warmup(self, of=None) -> list[tuple[float, float]]:
        of = of or self.survivors_mib
        return [(s.seconds, of(s)) for s in self.samples if s.seconds >= self.warmup_s]

    def rss_growth(self, of=None) -> tuple[float, float, float]:
        """(RSS just after warm-up, at the end, growth) in MiB, by default of the
        processes that lived through the run; each end the mean of a tenth of the
        post-warm-up samples (at least 2)."""
        after = [value for _, value in self.after_warmup(of)]
        if len(after) < 2:
            return float("nan"), float("nan"), float("nan")
        k = max(2, len(after) // 10)
        start, end = statistics.mean(after[:k]), statistics.mean(after[-k:])
        return start, end, end / start - 1

    def rss_slope(self) -> float:
        """Least-squares slope of the surviving processes' RSS after warm-up, MiB per minute."""
        points = self.after_warmup()
        if len(points) < 2:
            return float("nan")
        return float(np.polyfit([s / 60 for s, _ in points], [v for _, v in points], 1)[0])

    def targets(self, rss_limit: float = RSS_GROWTH_LIMIT) -> dict[str, tuple[bool, str]]:
        start, end, growth = self.rss_growth()
        silent = [n for n, t in self.tally.items() if t.answers == 0]
        over = [f"{f.kind} {f.target}: {f.lost} lost, {f.in_flight} in flight" for f in self.faults if f.lost > f.in_flight]
        unrecovered = [f"{f.kind} {f.target}" for f in self.faults if f.recovered is None]
        return {
            "0 unexpected errors outside the fault windows": (not self.unexplained, f"{len(self.unexplained)}"),
            "each fault lost at most the requests in flight at its moment": (not over, "; ".join(over) or "yes"),
            "every fault recovered from": (not unrecovered, ", ".join(unrecovered) or f"{len(self.faults)} of {len(self.faults)}"),
            "every model answered": (not silent, f"without an answer: {silent}" if silent else "all"),
            f"RSS growth after warm-up <= {rss_limit:.0%}": (
                growth <= rss_limit,
                f"{start:.0f} -> {end:.0f} MiB ({growth:+.1%}) over the processes that lived through the run, slope {self.rss_slope():+.1f} MiB/min",
            ),
            "shared memory released after shutdown": (self.shm_after_shutdown == 0, f"{self.regions} regions, {self.shm_after_shutdown} bytes left"),
            "no stub died but those the faults hit; every model READY at the end": (
                not self.unplanned and self.ready_at_end,
                ", ".join(self.unplanned) or ("yes" if self.ready_at_end else "not READY"),
            ),
        }

    def passed(self, rss_limit: float = RSS_GROWTH_LIMIT) -> bool:
        return all(ok for ok, _ in self.targets(rss_limit).values())


def soak_repository(models: list[str] | None, folder: Path) -> Path:
    """model_repository/ itself, or a folder linking the named entry models
    and every model they call."""
    if models is None:
        return MODEL_REPOSITORY
    folder.mkdir(parents=True, exist_ok=True)
    for model in with_callees([m for m in models if (MODEL_REPOSITORY / m).is_dir()]):
        (folder / model).symlink_to(MODEL_REPOSITORY / model, target_is_directory=True)
    return folder


def serve(models: list[str] | None, preload: str | None, workdir: Path, poll_s: float, log) -> tuple[TritonServer, Supervisor, Path]:
    """A server as the launcher runs it: explicit model control, the admin
    key, the watchdog and the repository poller; plus a small repository of
    its own, where the publish fault lands."""
    publish_repo = workdir / "published"
    publish_repo.mkdir()
    publish_model(publish_repo)
    repositories = [soak_repository(models, workdir / "repository"), publish_repo]
    server = TritonServer(repositories=repositories, preload=preload, admin_key=secrets.token_urlsafe(24), explicit_model_control=True)
    server.start(timeout=600)
    supervisor = Supervisor(server.process.pid, server.http_url, server.metrics_url, server.admin_key, server.progress_dir, poll_secs=poll_s, log=log)
    return server, supervisor.start(), publish_repo


def sample(server: TritonServer, traffic: Traffic, started: float, regions: set[str]) -> Sample:
    pid = server.process.pid
    stubs = stubs_of(pid)
    regions |= {stub.region for stub in stubs.values() if stub.region.startswith("triton_")}
    rss = {p: _status_kib(p) / 1024 for p in (pid, *stubs)}
    return Sample(
        seconds=time.monotonic() - started,
        server_mib=rss[pid],
        stubs_mib=sum(rss.values()) - rss[pid],
        stubs=len(stubs),
        shm_mib=region_bytes(regions) / 2**20,
        done=traffic.done,
        rss_by_pid=rss,
    )


def drive(traffic: Traffic, server: TritonServer, concurrency: int, duration: float, sample_s: float, injector: FaultInjector, log) -> tuple[list[Sample], set[str], float]:
    """The clients until the deadline, the faults on their plan, a sample
    every `sample_s`: (samples, regions seen, wall seconds)."""
    samples: list[Sample] = []
    regions: set[str] = set()
    started = time.monotonic()
    workers = [threading.Thread(target=traffic.worker, args=(n, started + duration), daemon=True) for n in range(concurrency)]
    for worker in workers:
        worker.start()
    injector.start(started, duration)
    log(f"soak: {concurrency} clients for {duration / 60:g} min over {len(traffic.models)} entry models, {len(injector.faults)} faults planned")
    next_log = started + 60
    while any(w.is_alive() for w in workers):
        samples.append(sample(server, traffic, started, regions))
        if time.monotonic() >= next_log:
            next_log += 60
            log(f"soak: {samples[-1].seconds / 60:.0f} min, {traffic.done} requests")
        time.sleep(sample_s)
    wall = time.monotonic() - started
    for worker in workers:
        worker.join(CLIENT_TIMEOUT_S)
    injector.stop()
    return samples, regions, wall


def run_soak(
    minutes: float,
    concurrency: int,
    bad_fraction: float = 0.03,
    sample_s: float | None = None,
    preload: str | None = None,
    seed: int = 0,
    models: list[str] | None = None,
    faults=DEFAULT_PLAN,
    poll_s: float = 5.0,
    log=print,
) -> SoakResult:
    """Soak a server of its own (every entry model, or those named, and the
    publish fault's model), injecting `faults` ((kind, target, share of the
    run), perf/soak_faults.py); the server is stopped at the end, so the
    shared memory left behind is measured."""
    entry_models = soak_entries(None if models is None else [*models, publish_entry().model])
    preload = resolve_preload(preload)
    duration = minutes * 60
    with tempfile.TemporaryDirectory(prefix="soak-") as workdir:
        server, supervisor, publish_repo = serve(models, preload, Path(workdir), poll_s, log)
        try:
            traffic = Traffic(server, entry_models, bad_fraction, seed)
            log(f"soak: server ready ({len(stubs_of(server.process.pid))} stubs); answering each good request alone first")
            traffic.record_references()
            users = pipeline_users(list(entry_models))
            plan = [fault for fault in faults if fault[1] in users]  # the targets this repository serves
            injector = FaultInjector(plan, server, supervisor, publish_repo, users, log=log)
            samples, regions, wall = drive(traffic, server, concurrency, duration, sample_s or max(1.0, duration / 150), injector, log)
            ready = server.is_ready() and not {n: r for n, r in server.failed_models().items() if r != "unloaded"}
        finally:
            supervisor.stop()
            server.stop()
    targets = {f.target for f in injector.faults}
    unexplained = attribute(injector.faults, traffic.records)
    notes = dict(traffic.notes)
    return SoakResult(
        minutes=minutes,
        concurrency=concurrency,
        bad_fraction=bad_fraction,
        preload=preload,
        tally=dict(sorted(traffic.tally.items())),
        samples=samples,
        warmup_s=min(60.0, duration / 3),
        shm_after_shutdown=region_bytes(regions),
        regions=len(regions),
        faults=injector.faults,
        unexplained=[notes.get(i, traffic.records[i][0]) for i in unexplained],
        unplanned=[f"{r.model} ({r.reason})" for r in supervisor.recoveries if r.model not in targets],
        ready_at_end=ready,
        wall_s=wall,
    )


# ------------------------------------------------------------------ report


def _ms(value: float | None) -> str:
    return "-" if value is None else (f"{value:.1f}" if value >= 10 else f"{value:.2f}")


def markdown(result: SoakResult, command: str) -> str:
    refused = sum(sum(t.refused.values()) for t in result.tally.values())
    bad = sum(t.bad_refused for t in result.tally.values())
    answers = sum(t.answers for t in result.tally.values())
    lost = sum(f.lost for f in result.faults)
    lines = [
        "# soak",
        "",
        f"`{command}` on {time.strftime('%Y-%m-%d')}, {machine()}"
        + (f", LD_PRELOAD={result.preload}" if result.preload else ", default allocator (glibc)")
        + ".",
        "Plot: [soak.png](soak.png) (memory and throughput over time, faults marked).",
        "",
        f"{result.requests} requests in {result.wall_s / 60:.1f} min from {result.concurrency} clients "
        f"({result.requests / result.wall_s:.1f} requests/s), half over HTTP and half over gRPC (streams over gRPC), "
        f"{result.bad_fraction:.0%} bad inputs: {answers} answers (each equal to the request's answer alone), "
        f"{bad} bad inputs refused naming the tensor, {refused} refused under load (queue full or queue timeout), "
        f"{result.unexpected + result.unanswered} failed: {lost} inside the windows of the {len(result.faults)} faults, "
        f"{len(result.unexplained)} outside them.",
        "",
        "| target | met | measured |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {'yes' if ok else '**no**'} | {text} |" for name, (ok, text) in result.targets().items()]
    return "\n".join(lines + fault_table(result) + model_table(result) + memory_table(result)) + "\n"


def fault_table(result: SoakResult) -> list[str]:
    lines = [
        "",
        "Faults (perf/soak_faults.py): the window runs from the fault until its recovery was seen; a request that failed in it,"
        " on an entry model whose pipeline runs the target, was lost to it.",
        "",
        "| fault | target | at, s | window, s | entry models through it | requests in flight at the fault | lost | what happened |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in result.faults:
        window = "-" if f.window_s is None else f"{f.window_s:.1f}"
        lines.append(f"| {f.kind} | {f.target} | {f.at_s:.0f} | {window} | {', '.join(sorted(f.affected))} | {f.in_flight} | {f.lost} | {f.detail} |")
    if result.unexplained:
        lines += ["", "Failed outside the fault windows (first 20):", ""] + [f"- {e}" for e in result.unexplained[:20]]
    return lines


def model_table(result: SoakResult) -> list[str]:
    lines = [
        "",
        "| model | requests | answers | bad input refused | queue full | queue timeout | unexpected | unanswered | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, t in result.tally.items():
        cells = [name, t.requests, t.answers, t.bad_refused, t.refused[REFUSALS[0]], t.refused[REFUSALS[1]], t.unexpected, t.unanswered]
        lines.append("| " + " | ".join(str(c) for c in cells) + f" | {_ms(t.percentile(50))} | {_ms(t.percentile(99))} |")
    return lines


def memory_table(result: SoakResult) -> list[str]:
    first, last = result.samples[0], result.samples[-1]
    shm_start, shm_end, _ = result.rss_growth(lambda s: s.shm_mib)
    return [
        "",
        "| memory | at start | peak | at the end |",
        "|---|---|---|---|",
        f"| tritonserver RSS, MiB | {first.server_mib:.0f} | {max(s.server_mib for s in result.samples):.0f} | {last.server_mib:.0f} |",
        f"| stubs RSS (all {last.stubs}), MiB | {first.stubs_mib:.0f} | {max(s.stubs_mib for s in result.samples):.0f} | {last.stubs_mib:.0f} |",
        f"| Python backend shared memory (/dev/shm, {result.regions} regions), MiB | {first.shm_mib:.0f} | "
        f"{max(s.shm_mib for s in result.samples):.0f} | {last.shm_mib:.0f} (after shutdown: {result.shm_after_shutdown} bytes) |",
        "",
        f"Warm-up: the first {result.warmup_s:.0f} s. RSS growth compares the mean of the first and the last tenth of the samples after it,"
        " over the server and the stubs that lived through the run after warm-up (a stub a fault killed is replaced by a new process"
        f" that loads its model again: its memory is not growth); the slope is a least-squares line through them ({result.rss_slope():+.1f} MiB/min)."
        f" The memory table counts every process. Shared memory the same way: {shm_start:.0f} -> {shm_end:.0f} MiB (a stub's region grows"
        " to its high-water mark and is never shrunk, so growth there is the largest batch seen so far, not a leak, unless it goes on;"
        " a killed stub's region is removed at shutdown).",
    ]


def plot(result: SoakResult, path: Path, title: str) -> None:
    # matplotlib only when plotting (a slow import), and its backend chosen before pyplot loads
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg")

    s = result.samples
    minutes = [x.seconds / 60 for x in s]
    figure, (memory, rate) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
    memory.plot(minutes, [x.server_mib for x in s], label="tritonserver RSS")
    memory.plot(minutes, [x.stubs_mib for x in s], label=f"stubs RSS ({s[-1].stubs})")
    memory.plot(minutes, [x.shm_mib for x in s], label="/dev/shm regions")
    memory.axvline(result.warmup_s / 60, color="grey", linestyle="--", label="end of warm-up")
    for fault in result.faults:
        if fault.started is not None:
            for axis in (memory, rate):
                axis.axvline(fault.at_s / 60, color="red", alpha=0.4, linestyle=":")
            memory.annotate(f"{fault.kind} {fault.target}", (fault.at_s / 60, 0), rotation=90, fontsize=6, va="bottom", color="red")
    memory.set_ylabel("MiB")
    memory.legend(fontsize=8)
    memory.grid(True, alpha=0.3)
    pairs = list(zip(s, s[1:]))
    rate.plot([b.seconds / 60 for _, b in pairs], [(b.done - a.done) / max(b.seconds - a.seconds, 1e-9) for a, b in pairs])
    rate.set_ylabel("requests/s")
    rate.set_xlabel("minutes")
    rate.grid(True, alpha=0.3)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(result: SoakResult, command: str, results_dir: Path) -> list[Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    md, png = results_dir / "soak.md", results_dir / "soak.png"
    md.write_text(markdown(result, command))
    plot(result, png, f"soak: {command}")
    return [md, png]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Soak every entry model with mixed traffic and faults; perf/results/soak.md and .png")
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES") or 10))
    parser.add_argument("--concurrency", type=int, default=int(os.environ.get("SOAK_CONCURRENCY") or 32))
    parser.add_argument("--bad-fraction", type=float, default=0.03, help="share of bad requests (default 0.03)")
    parser.add_argument(
        "--preload", default=os.environ.get("SOAK_PRELOAD") or None, help="a malloc to LD_PRELOAD into the server and stubs: jemalloc, or a path"
    )
    parser.add_argument("--no-faults", action="store_true", help="fair weather: inject no fault")
    parser.add_argument("--models", help="comma-separated entry models (and what they call) instead of the whole repository")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    command = f"make soak SOAK_MINUTES={args.minutes:g} SOAK_CONCURRENCY={args.concurrency}" + (f" SOAK_PRELOAD={args.preload}" if args.preload else "")
    command += " SOAK_ARGS=--no-faults" if args.no_faults else ""
    models = args.models.split(",") if args.models else None
    result = run_soak(args.minutes, args.concurrency, args.bad_fraction, preload=args.preload, models=models, faults=() if args.no_faults else DEFAULT_PLAN)
    paths = write(result, command, args.results_dir)
    for name, (ok, text) in result.targets().items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {text}")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0 if result.passed() else 1


if __name__ == "__main__":
    sys.exit(main())
