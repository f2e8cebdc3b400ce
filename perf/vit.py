"""vit: the seed's ViT deployed both ways, measured side by side on the same
picture bytes: perf_analyzer on `vit` (image_decode -> vit_preprocess ->
vit_model, ONNX) and `vit_python` (one Python model: transformers' processor
and the torch ViTModel), beside transformers called directly in this process
(decode + processor + ViTModel, one picture per call, sequential and from
closed-loop threads)."""

from __future__ import annotations


from perf.harness import closed_loop, format_table, picture_inputs, run_perf_analyzer
from perf.orientation import sequential
from pipelines.image.decode import decode_image
from pipelines.image.testset import photo_samples
from pipelines.vit import TorchViT, checkpoint_dir

UNIT = "images"
DIRECT = "transformers in-process, sequential"


def run(server, concurrencies, quick: bool = False) -> str:
    pictures = [sample.data for sample in photo_samples()]
    data = picture_inputs(pictures, "vit")
    measurement_ms = 3000 if quick else 8000
    rows = []
    for model in ("vit", "vit_python"):
        for c in concurrencies:
            rows.append(run_perf_analyzer(model, server.http_url, c, data, measurement_ms=measurement_ms))

    reference = TorchViT(checkpoint_dir())

    def direct(p: bytes) -> None:
        reference([decode_image(p, "rgb")])

    rows.append(sequential(direct, pictures, measurement_ms / 1000, DIRECT))
    for c in concurrencies[1:]:
        rows.append(closed_loop(lambda i: (direct(pictures[i % len(pictures)]), 1)[1], c, duration_s=measurement_ms / 1000, label="transformers in-process, threads"))
    table = format_table(rows, UNIT, reference=DIRECT)
    top = max(concurrencies)
    by = {(r.system, r.concurrency): r.throughput for r in rows}
    return (
        table
        + f"\n\n{len(pictures)} pictures (pipelines.image.testset.photo_samples), round-robin. At concurrency {top}: "
        + f"vit {by[('triton vit', top)]:.1f} images/s, vit_python {by[('triton vit_python', top)]:.1f} "
        + f"({by[('triton vit', top)] / by[('triton vit_python', top)]:.2f}x for the ensemble)."
    )
