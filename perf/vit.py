"""vit: the seed's ViT deployed both ways, measured side by side on the same
picture bytes: perf_analyzer on `vit` (image_decode -> vit_preprocess ->
vit_model, ONNX) and `vit_python` (one Python model: transformers' processor
and the torch ViTModel), beside transformers called directly in this process
(decode + processor + ViTModel, one picture per call, sequential and from
closed-loop threads)."""

from __future__ import annotations

from perf.harness import closed_loop, picture_inputs, run_perf_analyzer, sequential
from perf.report import Report, Table
from pipelines.image.decode import decode_image
from pipelines.vit.models import TorchViT
from runtime.paths import checkpoint_dir
from testsets.images import photo_samples

DIRECT = "transformers in-process, sequential"


def run(server, concurrencies, quick: bool = False) -> Report:
    pictures = [sample.data for sample in photo_samples()]
    data = picture_inputs(pictures, "vit")
    measurement_ms = 3000 if quick else 8000
    rows = []
    for model in ("vit", "vit_python"):
        for c in concurrencies:
            rows.append(run_perf_analyzer(model, server.http_url, c, data, measurement_ms=measurement_ms))

    reference = TorchViT(checkpoint_dir("vit"))

    def direct(p: bytes) -> None:
        reference([decode_image(p, "rgb")])

    rows.append(sequential(direct, pictures, measurement_ms / 1000, DIRECT))
    for c in concurrencies[1:]:
        rows.append(closed_loop(lambda i: (direct(pictures[i % len(pictures)]), 1)[1], c, duration_s=measurement_ms / 1000, label="transformers in-process, threads"))
    table = Table(f"vit: {len(pictures)} pictures (testsets/images.py photo_samples), round-robin", "images", rows, DIRECT)
    top = max(concurrencies)
    vit, vit_python = table.value("triton vit", top), table.value("triton vit_python", top)
    return Report([table], [f"At concurrency {top}: vit {vit:.1f} images/s, vit_python {vit_python:.1f} ({vit / vit_python:.2f}x for the ensemble)."])
