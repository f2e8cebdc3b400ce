"""Reading Triton's statistics API (/v2/models/<m>/stats), the one place that
does: the tests' batching checks, the perf suites' per-model time shares and
the sweeps all use it.

The server records a request's statistics after it has sent the response,
so counts read right after the answers can still lag: `settled` waits until
they stop changing, `since` until they reach an expected count."""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Sequence

import tritonclient.http as httpclient


@dataclass(frozen=True)
class ModelStats:
    """Cumulative counters of a model's latest version. `queue_ns` is summed
    over requests; `compute_ns` over executions (Triton's batch statistics:
    in its per-request statistics every request of a batch is charged the
    whole batch's compute, which over-counts a batching model's time)."""

    inferences: int = 0
    executions: int = 0
    requests: int = 0
    queue_ns: int = 0
    compute_ns: int = 0

    def __sub__(self, other: "ModelStats") -> "ModelStats":
        return ModelStats(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))

    def per_execution(self) -> str:
        executions, requests = max(self.executions, 1), max(self.requests, 1)
        return (
            f"{self.inferences / executions:.1f} items/exec, queue {self.queue_ns / requests / 1e6:.1f} ms/request, "
            f"compute {self.compute_ns / executions / 1e6:.1f} ms/exec"
        )


COMPUTE_PHASES = ("compute_input", "compute_infer", "compute_output")


def read(client, model: str) -> ModelStats:
    """`client`: a tritonclient.http InferenceServerClient."""
    entry = client.get_inference_statistics(model_name=model)["model_stats"][0]
    stats = entry.get("inference_stats", {})
    batches = entry.get("batch_stats") or []
    if batches:
        compute = sum(int(batch.get(k, {}).get("ns", 0)) for batch in batches for k in COMPUTE_PHASES)
    else:  # ensembles keep no batch statistics
        compute = sum(int(stats.get(k, {}).get("ns", 0)) for k in COMPUTE_PHASES)
    return ModelStats(
        inferences=int(entry.get("inference_count", 0)),
        executions=int(entry.get("execution_count", 0)),
        requests=int(stats.get("success", {}).get("count", 0)),
        queue_ns=int(stats.get("queue", {}).get("ns", 0)),
        compute_ns=compute,
    )


def read_all(url: str, models: Sequence[str]) -> dict[str, ModelStats]:
    client = httpclient.InferenceServerClient(url)
    try:
        return {model: read(client, model) for model in models}
    finally:
        client.close()


def settled(client, model: str, quiet: float = 0.3, timeout: float = 10.0) -> ModelStats:
    """`read` once the counts stop changing for `quiet` seconds (statistics of
    requests answered just before can still be arriving)."""
    deadline = time.monotonic() + timeout
    last = read(client, model)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = read(client, model)
        if (now.inferences, now.executions) == (last.inferences, last.executions):
            return now
        last = now
    return last


def since(client, model: str, before: ModelStats, expected: int, timeout: float = 10.0) -> ModelStats:
    """What `model` did since `before`, polled until its inferences reach `expected`."""
    deadline = time.monotonic() + timeout
    while True:
        delta = read(client, model) - before
        if delta.inferences >= expected or time.monotonic() > deadline:
            return delta
        time.sleep(0.05)


def time_shares(before: dict[str, ModelStats], after: dict[str, ModelStats]) -> str:
    """Per model between two `read_all` readings: items per execution, mean
    queue milliseconds per request and compute milliseconds per execution."""
    return "; ".join(f"{model} {(after[model] - before[model]).per_execution()}" for model in after)
