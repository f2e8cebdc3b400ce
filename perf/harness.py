"""What every perf suite shares: perf_analyzer runs with real inputs, and
closed-loop and sequential baselines measured the same way (rows of
perf/report.py)."""

from __future__ import annotations

import base64
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from clients.common import encoded_bytes_tensor
from perf.report import Row
from runtime.distribution import assemble_lib_dir, find_distribution
from runtime.paths import BUILD_DIR
from runtime.server import TritonServer, served_preload


def benchmark_server(repositories: list[Path] | None = None) -> TritonServer:
    """A server for a benchmark, with the malloc `make serve` preloads (what
    users are served with is what is measured)."""
    return TritonServer(repositories=repositories, preload=served_preload())


def perf_analyzer_binary() -> Path:
    return Path(sys.executable).parent / "perf_analyzer"


def perf_analyzer_env() -> dict[str, str]:
    dist = find_distribution()
    assemble_lib_dir(dist=dist)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(BUILD_DIR / "lib"), env.get("LD_LIBRARY_PATH")]))
    return env


def tensor_entry(array: np.ndarray) -> dict:
    """One tensor of perf_analyzer's --input-data JSON."""
    if array.dtype == np.object_:  # BYTES: perf_analyzer takes UTF-8 strings
        return {"content": [bytes(x).decode() for x in array.reshape(-1)], "shape": list(array.shape)}
    # fixed-size types go as base64 of the raw tensor (the only way for FP16,
    # and compact for encoded image bytes)
    return {"b64": base64.b64encode(np.ascontiguousarray(array).tobytes()).decode(), "shape": list(array.shape)}


def write_input_data(samples: Sequence[dict[str, np.ndarray]], path: Path) -> Path:
    """Real inputs for perf_analyzer: one entry per sample, used round-robin."""
    path.write_text(json.dumps({"data": [{name: tensor_entry(a) for name, a in s.items()} for s in samples]}))
    return path


def picture_inputs(pictures: Sequence[bytes], name: str) -> Path:
    """--input-data of the image pipelines: one encoded picture per request
    (`input_image`, perf_analyzer adds the batch axis), in a fresh temp folder."""
    folder = Path(tempfile.mkdtemp(prefix=f"perf-{name}-"))
    return write_input_data([{"input_image": encoded_bytes_tensor(p)} for p in pictures], folder / f"{name}.json")


def text_inputs(texts: Sequence[str], name: str) -> Path:
    """--input-data of the text pipelines: one text per request (`text`)."""
    folder = Path(tempfile.mkdtemp(prefix=f"perf-{name}-"))
    return write_input_data([{"text": np.array([t.encode()], dtype=np.object_)} for t in texts], folder / f"{name}.json")


def run_perf_analyzer(
    model: str,
    url: str,
    concurrency: int,
    input_data: Path,
    items_per_request: int = 1,
    batch_size: int = 1,
    protocol: str = "http",
    measurement_ms: int = 5000,
    label: str | None = None,
    fallback_requests: int = 50,
    request_count: int | None = None,
    extra_args: Sequence[str] = (),
) -> Row:
    """perf_analyzer at one concurrency: measurement windows until stable (a
    fixed number of requests if it never is), or exactly `request_count`
    requests when given (a smoke run)."""
    if request_count is not None and request_count < concurrency:
        # perf_analyzer then waits minutes for requests it never sends
        raise ValueError(f"request_count {request_count} is below the concurrency {concurrency}")
    with tempfile.NamedTemporaryFile(suffix=".csv", delete=False) as handle:
        report = Path(handle.name)
    base = [
        str(perf_analyzer_binary()),
        "-m", model,
        "-u", url,
        "-i", protocol,
        "-b", str(batch_size),
        "--concurrency-range", f"{concurrency}:{concurrency}",
        "--input-data", str(input_data),
        "--percentile", "95",
        "-f", str(report),
        *extra_args,
    ]
    windows = ["--measurement-interval", str(measurement_ms), "--stability-percentage", "30", "--max-trials", "8"]
    if request_count:
        windows = ["--request-count", str(request_count)]
    done = subprocess.run(base + windows, env=perf_analyzer_env(), capture_output=True, text=True, timeout=900)
    if done.returncode != 0 and "stable measurement" in done.stdout + done.stderr and fallback_requests:
        # a 2-core machine is noisy: measure a fixed number of requests instead
        fixed = ["--request-count", str(fallback_requests * concurrency)]
        done = subprocess.run(base + fixed, env=perf_analyzer_env(), capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"perf_analyzer failed on {model}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    with open(report) as handle:
        row = next(csv.DictReader(handle))
    report.unlink()
    return Row(
        system=label or f"triton {model}",
        concurrency=concurrency,
        throughput=float(row["Inferences/Second"]) * items_per_request,
        p50_ms=float(row["p50 latency"]) / 1000,
        p95_ms=float(row["p95 latency"]) / 1000,
    )


def closed_loop(
    call: Callable[[int], int],
    concurrency: int,
    duration_s: float = 8.0,
    warmup_calls: int = 2,
    label: str = "",
) -> Row:
    """`concurrency` threads each calling `call(i)` back to back (as
    perf_analyzer does); call returns how many items it handled."""
    for i in range(warmup_calls):
        call(i)
    latencies: list[float] = []
    items = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + duration_s

    failures: list[BaseException] = []

    def worker(offset: int) -> None:
        i = offset
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                n = call(i)
            except BaseException as error:  # a worker that stops would lower the concurrency unseen
                with lock:
                    failures.append(error)
                return
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                items[0] += n
            i += concurrency

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{label or 'closed loop'} at concurrency {concurrency}: {len(failures)} of {concurrency} clients failed; first: {failures[0]}") from failures[0]
    wall = time.monotonic() - started
    ordered = sorted(latencies)
    return Row(
        system=label,
        concurrency=concurrency,
        throughput=items[0] / wall,
        p50_ms=statistics.median(ordered) * 1000,
        p95_ms=ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000,
    )


def sequential(call: Callable[[object], object], items: Sequence, duration_s: float, label: str) -> Row:
    """`call(item)` on the items in turn, one at a time, for about duration_s
    (and at least once over the items)."""
    call(items[0])
    latencies = []
    started = time.perf_counter()
    i = 0
    while time.perf_counter() - started < duration_s or i < len(items):
        t0 = time.perf_counter()
        call(items[i % len(items)])
        latencies.append(time.perf_counter() - t0)
        i += 1
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    return Row(label, 1, len(latencies) / wall, statistics.median(ordered) * 1000, ordered[int(0.95 * (len(ordered) - 1))] * 1000)


def offline(label: str, items_per_second: float) -> Row:
    """A throughput measured without clients (an offline batched limit): no latency."""
    return Row(label, None, items_per_second)
