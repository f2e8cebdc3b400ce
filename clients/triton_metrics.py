"""Reading Triton's Prometheus metrics endpoint (port 8002, `/metrics`):
per-model request counts and cumulative queue and compute times, open to
anyone who can reach the port (unlike the statistics API, which a hardened
server keeps behind a key). The metrics name every loaded model and version.

    python clients/triton_metrics.py [--metrics-url http://localhost:8002/metrics]

prints one JSON line per model version.
As a library: `read(url)` -> {(model, version): ModelCounters}."""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.request
from dataclasses import asdict, dataclass

DEFAULT_URL = "http://localhost:8002/metrics"
# the counters read, by the ModelCounters field they fill
METRICS = {
    "nv_inference_request_success": "requests",
    "nv_inference_request_failure": "failures",
    "nv_inference_count": "inferences",
    "nv_inference_exec_count": "executions",
    "nv_inference_queue_duration_us": "queue_us",
    "nv_inference_compute_infer_duration_us": "compute_infer_us",
}
# name{label="value",...} value  (the Prometheus text format, one sample a line)
SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class ModelCounters:
    """Cumulative counters of one model version since the server started.
    Triton charges every request of a batch the batch's compute time, so
    `compute_ms_per_request` is what one request waited on compute."""

    requests: int = 0
    failures: int = 0
    inferences: int = 0
    executions: int = 0
    queue_us: float = 0.0
    compute_infer_us: float = 0.0

    @property
    def queue_ms_per_request(self) -> float | None:
        return self.queue_us / self.requests / 1e3 if self.requests else None

    @property
    def compute_ms_per_request(self) -> float | None:
        return self.compute_infer_us / self.requests / 1e3 if self.requests else None


def parse(text: str) -> dict[tuple[str, str], ModelCounters]:
    """{(model, version): counters} from the metrics page's text."""
    values: dict[tuple[str, str], dict[str, float]] = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if not match or match["name"] not in METRICS:
            continue
        labels = dict(LABEL.findall(match["labels"]))
        if "model" not in labels:
            continue
        key = (labels["model"], labels.get("version", ""))
        values.setdefault(key, {})[METRICS[match["name"]]] = float(match["value"])
    whole = {"requests", "failures", "inferences", "executions"}
    return {
        key: ModelCounters(**{field: int(value) if field in whole else value for field, value in fields.items()})
        for key, fields in sorted(values.items())
    }


def read(url: str = DEFAULT_URL, timeout: float = 5.0) -> dict[tuple[str, str], ModelCounters]:
    """The counters of every loaded model version (raises OSError when the endpoint cannot be reached)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return parse(response.read().decode("utf-8", errors="replace"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics-url", default=DEFAULT_URL)
    args = parser.parse_args(argv)
    for (model, version), counters in read(args.metrics_url).items():
        print(json.dumps({"model": model, "version": version, **asdict(counters)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
