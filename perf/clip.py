"""clip: perf_analyzer on `clip_image_embedding` (one encoded picture per
request) and `clip_text_embedding` (one text per request) with real inputs,
beside transformers' CLIP called once per request in a plain threaded web
server (what a user writes first) and called directly in batches in this
process (the offline limit: no server, no per-request work)."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from PIL import Image

from perf.baseline_server import BaselineServer
from perf.harness import Row, closed_loop, format_table, picture_inputs, run_perf_analyzer, text_inputs
from pipelines.clip import TorchCLIP, checkpoint_dir
from pipelines.image.testset import photo_samples
from pipelines.runtime.server import free_port
from pipelines.text.sentences import varied_sentences

PER_REQUEST = "transformers per-request server"


def offline(embed, items: list, batch: int, repeats: int) -> float:
    """Items/s of `embed(batch of items)` over all items, after a warm-up."""
    embed(items[:batch])
    started = time.perf_counter()
    for _ in range(repeats):
        for start in range(0, len(items), batch):
            embed(items[start : start + batch])
    return repeats * len(items) / (time.perf_counter() - started)


def measure(server, model: str, data: Path, baseline: str, bodies: list[bytes], concurrencies, seconds: float) -> list[Row]:
    rows = [run_perf_analyzer(model, server.http_url, c, data, measurement_ms=int(seconds * 1000)) for c in concurrencies]
    with BaselineServer(baseline, free_port()) as plain:
        for c in concurrencies:
            rows.append(closed_loop(lambda i: (plain.post(bodies[i % len(bodies)]), 1)[1], c, duration_s=seconds, label=PER_REQUEST))
    return rows


def ratio_line(rows: list[Row], model: str, unit: str) -> str:
    top = max(r.concurrency for r in rows)
    served = next(r.throughput for r in rows if r.system == f"triton {model}" and r.concurrency == top)
    plain = next(r.throughput for r in rows if r.system == PER_REQUEST and r.concurrency == top)
    limit = next(r.throughput for r in rows if r.concurrency == 0)
    return (
        f"At concurrency {top}: {model} serves {served / plain:.2f}x the per-request server's {unit}/s "
        f"and {served / limit:.2f}x the offline batched limit."
    )


def run(server, concurrencies, quick: bool = False) -> str:
    seconds = 3.0 if quick else 8.0
    pictures = [sample.data for sample in photo_samples()]
    texts = varied_sentences(200)
    image_data = picture_inputs(pictures, "clip-images")
    text_data = text_inputs(texts, "clip-texts")

    image_rows = measure(server, "clip_image_embedding", image_data, "clip_image", pictures, concurrencies, seconds)
    text_rows = measure(
        server, "clip_text_embedding", text_data, "clip_text", [json.dumps({"text": t}).encode() for t in texts], concurrencies, seconds
    )
    clip = TorchCLIP(checkpoint_dir())
    repeats = 1 if quick else 2
    image_rows.append(
        Row("transformers offline, batches of 16", 0, offline(lambda b: clip.embed_images([Image.open(io.BytesIO(p)) for p in b]), pictures, 16, repeats), 0, 0)
    )
    text_rows.append(Row("transformers offline, batches of 64", 0, offline(clip.embed_texts, texts, 64, repeats), 0, 0))
    return "\n\n".join(
        [
            format_table(image_rows, "images", reference=PER_REQUEST),
            ratio_line(image_rows, "clip_image_embedding", "images"),
            format_table(text_rows, "texts", reference=PER_REQUEST),
            ratio_line(text_rows, "clip_text_embedding", "texts"),
            f"{len(pictures)} pictures (pipelines.image.testset.photo_samples) and {len(texts)} sentences "
            "(pipelines.text.sentences), round-robin, one per request.",
        ]
    )
