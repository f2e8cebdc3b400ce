"""Soak: mixed traffic over every entry model for minutes, against a
tritonserver of its own, over HTTP and gRPC, with a few percent bad inputs.

`make soak` (`python -m perf.soak --minutes 10 --concurrency 32`) writes
`perf/results/soak.md` and `soak.png`. Every answer is checked: a good
request must get the answer it got alone (or a refusal: queue full, queue
timeout), a bad one a refusal naming its tensor; anything else is an
unexpected error. Server and stub RSS and the Python backend's shared-memory
regions (`/dev/shm`, the regions named on the stubs' command lines) are
sampled over time. Targets: 0 unexpected errors, no request unanswered, RSS
after warm-up growing by at most 10%, every region gone after shutdown."""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.paths import MODEL_REPOSITORY
from runtime import procfs
from runtime.server import resolve_preload, TritonServer
from runtime.watchdog import STUB_BINARY
from testsets.entries import Entry, Tensors, entries

# Relative share of requests per model: an OCR request costs a thousand times
# a text request (both cores for seconds), so it gets few, or the clients all
# end up waiting on OCR and the other models see little traffic.
WEIGHTS = {"ocr": 0.25, "ocr_bls": 0.25, "vit_python": 1, "orientation": 3, "vit": 3, "clip_image_embedding": 3}
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


def stubs_of(server_pid: int) -> dict[int, list[str]]:
    """The server's Python stubs: pid -> command line (model.py, shm region, ...)."""
    found = {}
    for pid in procfs.children(server_pid):
        argv = procfs.cmdline(pid)
        if argv and argv[0].endswith(STUB_BINARY):
            found[pid] = argv
    return found


def region_name(argv: list[str]) -> str | None:
    """The stub's shared-memory region (its second argument)."""
    return argv[2] if len(argv) > 2 and argv[2].startswith("triton_") else None


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


def same_answer(want: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> str | None:
    """None if `got` is `want` (floats within ATOL), else what differs."""
    if want.keys() != got.keys():
        return f"outputs {sorted(got)} instead of {sorted(want)}"
    for name, expected in want.items():
        value = got[name]
        if value.shape != expected.shape:
            return f"{name}: shape {value.shape} instead of {expected.shape}"
        if expected.dtype.kind in "fc":
            if not np.allclose(value, expected, rtol=0, atol=ATOL):
                return f"{name}: differs by {float(np.max(np.abs(value - expected))):.2e}"
        elif not np.array_equal(value, expected):
            return f"{name}: differs"
    return None


class Traffic:
    """Worker threads sending mixed requests until a deadline, each request
    checked and tallied per model."""

    def __init__(self, server: TritonServer, models: dict[str, Entry], bad_fraction: float, seed: int = 0):
        self.server = server
        self.models = models
        self.bad_fraction = bad_fraction
        self.names = sorted(models)
        self.weights = [WEIGHTS.get(n, DEFAULT_WEIGHT) for n in self.names]
        self.goods = {n: [e.good(i) for i in range(GOOD_POOL)] for n, e in models.items()}
        self.reference: dict[str, list[dict[str, np.ndarray]]] = {}
        self.tally: dict[str, ModelTally] = defaultdict(ModelTally)
        self.examples: list[str] = []
        self.done = 0
        self.issued = 0
        self.lock = threading.Lock()
        self.seed = seed

    def clients(self):
        import tritonclient.grpc as grpcclient
        import tritonclient.http as httpclient

        return (
            ("http", httpclient, httpclient.InferenceServerClient(self.server.http_url, network_timeout=CLIENT_TIMEOUT_S)),
            ("grpc", grpcclient, grpcclient.InferenceServerClient(self.server.grpc_url)),
        )

    def send(self, protocol: str, module, client, model: str, tensors: Tensors) -> dict[str, np.ndarray]:
        from clients.common import make_inputs

        kwargs = {"client_timeout": CLIENT_TIMEOUT_S} if protocol == "grpc" else {}
        result = client.infer(model, make_inputs(module, tensors), **kwargs)
        names = [o.name for o in result.get_response().outputs] if protocol == "grpc" else [o["name"] for o in result.get_response()["outputs"]]
        return {name: result.as_numpy(name) for name in names}

    def record_references(self) -> None:
        """Each good request alone over gRPC: the answers the soak must keep giving."""
        _, module, client = self.clients()[1]
        for name in self.names:
            self.reference[name] = [self.send("grpc", module, client, name, t) for t in self.goods[name]]

    def note(self, text: str) -> None:
        if len(self.examples) < 20:
            self.examples.append(text)

    def one(self, rng: random.Random, protocol: str, module, client) -> None:
        from tritonclient.utils import InferenceServerException

        with self.lock:  # every model once first, then the weighted mix
            issued, self.issued = self.issued, self.issued + 1
        name = self.names[issued] if issued < len(self.names) else rng.choices(self.names, self.weights)[0]
        entry = self.models[name]
        bad = entry.bad[rng.randrange(len(entry.bad))] if rng.random() < self.bad_fraction else None
        index = rng.randrange(GOOD_POOL)
        tensors = bad[1] if bad else self.goods[name][index]
        started = time.monotonic()
        outcome, detail = "answer", None
        try:
            got = self.send(protocol, module, client, name, tensors)
            if bad:
                outcome, detail = "unexpected", f"bad input '{bad[0]}' answered"
            else:
                problem = same_answer(self.reference[name][index], got)
                if problem:
                    outcome, detail = "unexpected", f"wrong answer: {problem}"
        except InferenceServerException as error:
            message = str(error)
            refusal = next((r for r in REFUSALS if r in message), None)
            if "Deadline" in message or "timed out" in message.lower():
                outcome, detail = "unanswered", message
            elif refusal:
                outcome, detail = "refused", refusal
            elif bad and bad[2] in message and entry.named in message:
                outcome = "bad_refused"
            else:
                outcome, detail = "unexpected", message
        except Exception as error:  # noqa: BLE001 - a broken connection is a finding, not a crash
            outcome, detail = "unanswered", f"{type(error).__name__}: {error}"
        seconds = time.monotonic() - started
        with self.lock:
            tally = self.tally[name]
            tally.requests += 1
            self.done += 1
            if outcome == "answer":
                tally.answers += 1
                tally.latencies.append(seconds)
            elif outcome == "refused":
                tally.refused[detail] += 1
            elif outcome == "bad_refused":
                tally.bad_refused += 1
            elif outcome == "unanswered":
                tally.unanswered += 1
                self.note(f"{name} over {protocol}: unanswered after {seconds:.1f} s: {detail}")
            else:
                tally.unexpected += 1
                self.note(f"{name} over {protocol}{' (' + bad[0] + ')' if bad else ''}: {detail}")

    def worker(self, number: int, deadline: float) -> None:
        rng = random.Random(self.seed * 1000 + number)
        pairs = self.clients()
        turn = number
        while time.monotonic() < deadline:
            protocol, module, client = pairs[turn % 2]  # both protocols for every model
            turn += 1
            self.one(rng, protocol, module, client)
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
    shm_after_shutdown: int | None
    """Bytes left in the stubs' regions once the server stopped (None: not stopped here)."""
    regions: int
    stubs_died: list[str]
    ready_at_end: bool
    examples: list[str]
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

    def rss_growth(self, of=lambda s: s.server_mib + s.stubs_mib) -> tuple[float, float, float]:
        """(RSS just after warm-up, at the end, growth) of server + stubs, in MiB;
        each end the mean of a tenth of the post-warm-up samples (at least 2)."""
        after = [of(s) for s in self.samples if s.seconds >= self.warmup_s]
        if len(after) < 2:
            return float("nan"), float("nan"), float("nan")
        k = max(2, len(after) // 10)
        start, end = statistics.mean(after[:k]), statistics.mean(after[-k:])
        return start, end, end / start - 1

    def targets(self, rss_limit: float = RSS_GROWTH_LIMIT) -> dict[str, tuple[bool, str]]:
        start, end, growth = self.rss_growth()
        models = [n for n, t in self.tally.items() if t.answers == 0]
        left = self.shm_after_shutdown
        return {
            "0 unexpected errors": (self.unexpected == 0, f"{self.unexpected}"),
            "no request unanswered": (self.unanswered == 0, f"{self.unanswered} unanswered"),
            "every model answered": (not models, f"without an answer: {models}" if models else "all"),
            f"RSS growth after warm-up <= {rss_limit:.0%}": (growth <= rss_limit, f"{start:.0f} -> {end:.0f} MiB ({growth:+.1%})"),
            "shared memory released after shutdown": (
                left in (0, None),
                "not measured: the server keeps running" if left is None else f"{self.regions} regions, {left} bytes left",
            ),
            "no stub died, server READY at the end": (not self.stubs_died and self.ready_at_end, ", ".join(self.stubs_died) or "yes"),
        }

    def passed(self, rss_limit: float = RSS_GROWTH_LIMIT) -> bool:
        return all(ok for ok, _ in self.targets(rss_limit).values())


def _start_server(preload: str | None) -> TritonServer:
    return TritonServer(repositories=[MODEL_REPOSITORY], preload=preload).start(timeout=600)


def run_soak(
    minutes: float,
    concurrency: int,
    bad_fraction: float = 0.03,
    sample_s: float | None = None,
    preload: str | None = None,
    seed: int = 0,
    server: TritonServer | None = None,
    log=print,
) -> SoakResult:
    """Soak a server of its own (stopped at the end, so the shared memory
    left behind is measured), or `server` (left running: not measured)."""
    models = entries()
    preload = resolve_preload(preload)
    own = server is None
    server = _start_server(preload) if own else server
    samples: list[Sample] = []
    regions: set[str] = set()
    try:
        pid = server.process.pid
        first_stubs = stubs_of(pid)
        traffic = Traffic(server, models, bad_fraction, seed)
        log(f"soak: server ready ({len(first_stubs)} stubs); answering each good request alone first")
        traffic.record_references()
        duration = minutes * 60
        sample_s = sample_s or max(1.0, duration / 150)
        started = time.monotonic()
        deadline = started + duration
        workers = [threading.Thread(target=traffic.worker, args=(n, deadline), daemon=True) for n in range(concurrency)]
        for worker in workers:
            worker.start()
        log(f"soak: {concurrency} clients for {minutes:g} min over {len(models)} entry models")
        next_log = started + 60
        while any(w.is_alive() for w in workers):
            stubs = stubs_of(pid)
            regions |= {r for argv in stubs.values() if (r := region_name(argv))}
            samples.append(
                Sample(
                    seconds=time.monotonic() - started,
                    server_mib=_status_kib(pid) / 1024,
                    stubs_mib=sum(_status_kib(p) for p in stubs) / 1024,
                    stubs=len(stubs),
                    shm_mib=region_bytes(regions) / 2**20,
                    done=traffic.done,
                )
            )
            if time.monotonic() >= next_log:
                next_log += 60
                log(f"soak: {samples[-1].seconds / 60:.0f} min, {traffic.done} requests")
            time.sleep(sample_s)
        wall = time.monotonic() - started
        for worker in workers:
            worker.join(CLIENT_TIMEOUT_S)
        died = [f"{argv[-2]} (pid {p})" for p, argv in first_stubs.items() if not Path(f"/proc/{p}").exists()]
        ready = server.is_ready() and all(m.get("state") == "READY" for m in server.model_states())
    finally:
        if own:
            server.stop()
    return SoakResult(
        minutes=minutes,
        concurrency=concurrency,
        bad_fraction=bad_fraction,
        preload=preload,
        tally=dict(sorted(traffic.tally.items())),
        samples=samples,
        warmup_s=min(60.0, duration / 3),
        shm_after_shutdown=region_bytes(regions) if own else None,
        regions=len(regions),
        stubs_died=died,
        ready_at_end=ready,
        examples=traffic.examples,
        wall_s=wall,
    )


# ------------------------------------------------------------------ report


def _ms(value: float | None) -> str:
    return "-" if value is None else (f"{value:.1f}" if value >= 10 else f"{value:.2f}")


def markdown(result: SoakResult, command: str) -> str:
    from perf.report import machine

    refused = sum(sum(t.refused.values()) for t in result.tally.values())
    bad = sum(t.bad_refused for t in result.tally.values())
    answers = sum(t.answers for t in result.tally.values())
    lines = [
        "# soak",
        "",
        f"`{command}` on {time.strftime('%Y-%m-%d')}, {machine()}"
        + (f", LD_PRELOAD={result.preload}" if result.preload else ", default allocator (glibc)")
        + ".",
        "Plot: [soak.png](soak.png) (memory and throughput over time).",
        "",
        f"{result.requests} requests in {result.wall_s / 60:.1f} min from {result.concurrency} clients "
        f"({result.requests / result.wall_s:.1f} requests/s), half over HTTP and half over gRPC, "
        f"{result.bad_fraction:.0%} bad inputs: {answers} answers (each equal to the request's answer alone), "
        f"{bad} bad inputs refused naming the tensor, {refused} refused under load (queue full or queue timeout), "
        f"{result.unexpected} unexpected errors, {result.unanswered} unanswered.",
        "",
        "| target | met | measured |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {'yes' if ok else '**no**'} | {text} |" for name, (ok, text) in result.targets().items()]
    lines += [
        "",
        "| model | requests | answers | bad input refused | queue full | queue timeout | unexpected | unanswered | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, t in result.tally.items():
        cells = [name, t.requests, t.answers, t.bad_refused, t.refused[REFUSALS[0]], t.refused[REFUSALS[1]], t.unexpected, t.unanswered]
        lines.append("| " + " | ".join(str(c) for c in cells) + f" | {_ms(t.percentile(50))} | {_ms(t.percentile(99))} |")
    first, last = result.samples[0], result.samples[-1]
    shm_start, shm_end, _ = result.rss_growth(lambda s: s.shm_mib)
    lines += [
        "",
        "| memory | at start | peak | at the end |",
        "|---|---|---|---|",
        f"| tritonserver RSS, MiB | {first.server_mib:.0f} | {max(s.server_mib for s in result.samples):.0f} | {last.server_mib:.0f} |",
        f"| stubs RSS (all {last.stubs}), MiB | {first.stubs_mib:.0f} | {max(s.stubs_mib for s in result.samples):.0f} | {last.stubs_mib:.0f} |",
        f"| Python backend shared memory (/dev/shm, {result.regions} regions), MiB | {first.shm_mib:.0f} | "
        f"{max(s.shm_mib for s in result.samples):.0f} | {last.shm_mib:.0f} (after shutdown: {'-' if result.shm_after_shutdown is None else result.shm_after_shutdown} bytes) |",
        "",
        f"Warm-up: the first {result.warmup_s:.0f} s; RSS growth compares the mean of the first and the last tenth of the samples after it"
        f" (shared memory the same way: {shm_start:.0f} -> {shm_end:.0f} MiB; a stub's region grows to its high-water mark and is"
        " never shrunk, so growth there is the largest batch seen so far, not a leak, unless it goes on).",
    ]
    if result.examples:
        lines += ["", "Unexpected or unanswered (first 20):", ""] + [f"- {e}" for e in result.examples]
    return "\n".join(lines) + "\n"


def plot(result: SoakResult, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result.samples
    minutes = [x.seconds / 60 for x in s]
    figure, (memory, rate) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
    memory.plot(minutes, [x.server_mib for x in s], label="tritonserver RSS")
    memory.plot(minutes, [x.stubs_mib for x in s], label=f"stubs RSS ({s[-1].stubs})")
    memory.plot(minutes, [x.shm_mib for x in s], label="/dev/shm regions")
    memory.axvline(result.warmup_s / 60, color="grey", linestyle="--", label="end of warm-up")
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
    from perf.report import RESULTS_DIR

    parser = argparse.ArgumentParser(description="Soak every entry model with mixed traffic; perf/results/soak.md and .png")
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES") or 10))
    parser.add_argument("--concurrency", type=int, default=int(os.environ.get("SOAK_CONCURRENCY") or 32))
    parser.add_argument("--bad-fraction", type=float, default=0.03, help="share of bad requests (default 0.03)")
    parser.add_argument(
        "--preload", default=os.environ.get("SOAK_PRELOAD") or None, help="a malloc to LD_PRELOAD into the server and stubs: jemalloc, or a path"
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    command = f"make soak SOAK_MINUTES={args.minutes:g} SOAK_CONCURRENCY={args.concurrency}" + (f" SOAK_PRELOAD={args.preload}" if args.preload else "")
    result = run_soak(args.minutes, args.concurrency, args.bad_fraction, preload=args.preload)
    paths = write(result, command, args.results_dir)
    for name, (ok, text) in result.targets().items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {text}")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0 if result.passed() else 1


if __name__ == "__main__":
    sys.exit(main())
