"""What every perf suite shares: a server of its own, perf_analyzer runs with
real inputs, closed-loop baselines at a given concurrency, one table."""

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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from pipelines.runtime.distribution import BUILD_DIR, assemble_lib_dir, find_distribution

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    system: str
    concurrency: int
    throughput: float  # items/s
    p50_ms: float
    p95_ms: float
    note: str = ""


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
    from pipelines.client import encoded_bytes_tensor

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
) -> Row:
    """perf_analyzer at one concurrency: measurement windows until stable (a
    fixed number of requests if it never is), or exactly `request_count`
    requests when given (a smoke run)."""
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

    def worker(offset: int) -> None:
        i = offset
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            n = call(i)
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
    wall = time.monotonic() - started
    ordered = sorted(latencies)
    return Row(
        system=label,
        concurrency=concurrency,
        throughput=items[0] / wall,
        p50_ms=statistics.median(ordered) * 1000,
        p95_ms=ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000,
    )


def format_table(rows: Sequence[Row], unit: str, reference: str | None = None) -> str:
    """Markdown table; `reference` names the system each throughput is compared with."""
    ref = {r.concurrency: r.throughput for r in rows if r.system == reference}
    ref_any = next((r.throughput for r in rows if r.system == reference), None)
    header = f"| system | concurrency | {unit}/s | p50 ms | p95 ms |" + (f" vs {reference} |" if reference else "")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in rows:
        line = f"| {r.system} | {r.concurrency} | {r.throughput:.1f} | {r.p50_ms:.1f} | {r.p95_ms:.1f} |"
        if reference:
            base = ref.get(r.concurrency, ref_any)
            line += f" {r.throughput / base:.2f}x |" if base else " - |"
        lines.append(line)
    return "\n".join(lines)


def save(name: str, table: str) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.md"
    path.write_text(table + "\n")
    return path


def model_stats(url: str, models: Sequence[str]) -> dict[str, dict[str, int]]:
    """Cumulative counters of each model's latest version: inferences,
    executions, and queue / compute nanoseconds (Triton's statistics API)."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url)
    try:
        out = {}
        for model in models:
            entry = client.get_inference_statistics(model_name=model)["model_stats"][0]
            stats = entry["inference_stats"]
            out[model] = {
                "inferences": int(entry.get("inference_count", 0)),
                "executions": int(entry.get("execution_count", 0)),
                "queue_ns": int(stats["queue"]["ns"]),
                "compute_ns": sum(int(stats[k]["ns"]) for k in ("compute_input", "compute_infer", "compute_output")),
            }
        return out
    finally:
        client.close()


def time_shares(before: dict, after: dict) -> str:
    """Per composing model between two model_stats readings: items per
    execution, and mean queue and compute milliseconds per execution."""
    parts = []
    for model in after:
        d = {k: after[model][k] - before[model][k] for k in after[model]}
        executions = max(d["executions"], 1)
        parts.append(
            f"{model} {d['inferences'] / executions:.1f} items/exec, "
            f"queue {d['queue_ns'] / executions / 1e6:.1f} ms, compute {d['compute_ns'] / executions / 1e6:.1f} ms"
        )
    return "; ".join(parts)
