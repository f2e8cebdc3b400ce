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
from perf.harness import closed_loop, offline, picture_inputs, run_perf_analyzer, text_inputs
from perf.report import Report, Row, Table
from runtime.paths import checkpoint_dir
from references.clip import TorchCLIP
from runtime.server import free_port
from testsets.images import photo_samples
from testsets.sentences import varied_sentences

PER_REQUEST = "transformers per-request server"


def items_per_second(embed, items: list, batch: int, repeats: int) -> float:
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


def ratio_line(table: Table, model: str, unit: str, offline_label: str, top: int) -> str:
    served = table.value(f"triton {model}", top)
    return (
        f"At concurrency {top}: {model} serves {served / table.value(PER_REQUEST, top):.2f}x the per-request server's {unit}/s "
        f"and {served / table.value(offline_label, None):.2f}x the offline batched limit."
    )


def run(server, concurrencies, quick: bool = False) -> Report:
    seconds = 3.0 if quick else 8.0
    pictures = [sample.data for sample in photo_samples()]
    texts = varied_sentences(200)
    image_rows = measure(server, "clip_image_embedding", picture_inputs(pictures, "clip-images"), "clip_image", pictures, concurrencies, seconds)
    text_bodies = [json.dumps({"text": t}).encode() for t in texts]
    text_rows = measure(server, "clip_text_embedding", text_inputs(texts, "clip-texts"), "clip_text", text_bodies, concurrencies, seconds)
    clip = TorchCLIP(checkpoint_dir("clip"))
    repeats = 1 if quick else 2
    image_offline, text_offline = "transformers offline, batches of 16", "transformers offline, batches of 64"
    image_rows.append(offline(image_offline, items_per_second(lambda b: clip.embed_images([Image.open(io.BytesIO(p)) for p in b]), pictures, 16, repeats)))
    text_rows.append(offline(text_offline, items_per_second(clip.embed_texts, texts, 64, repeats)))
    images = Table(f"clip_image_embedding: {len(pictures)} pictures (photo_samples), one per request", "images", image_rows, PER_REQUEST)
    sentences = Table(f"clip_text_embedding: {len(texts)} varied sentences, one per request", "texts", text_rows, PER_REQUEST)
    top = max(concurrencies)
    return Report(
        [images, sentences],
        [ratio_line(images, "clip_image_embedding", "images", image_offline, top), ratio_line(sentences, "clip_text_embedding", "texts", text_offline, top)],
    )
