"""RapidOCR called sequentially in one process, as a user would: the baseline
rows of the OCR suite. Self-contained (imports only RapidOCR and the
standard library), so it runs in the main venv (`rapidocr_onnxruntime`) and
in RapidOCR's OpenVINO venv (`rapidocr_openvino`, build/venv-rapidocr-openvino).

    python perf/rapidocr_baseline.py --flavour openvino --pictures DIR --seconds 20 --out result.json

Writes the recognised lines of every picture (one call each, after a
warm-up) and the throughput and latencies of a sequential loop over them.
With `--passes-on-request` it writes the lines only and stays up, warm: each line on its standard
input (`SECONDS`, or empty for one pass) times one more sequential loop over
the pictures and answers one JSON line on its standard output (perf/ocr.py's
baseline rows and paired rounds); RapidOCR's own prints go to standard error,
so they never mix with the answers."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import time
from pathlib import Path


def force_f32() -> None:
    """RapidOCR's OpenVINO sessions compiled with INFERENCE_PRECISION_HINT f32
    (what the served openvino backend uses): on CPUs with AVX512_BF16 or AMX the
    default hint is bf16, faster and with other numerics."""
    from openvino.runtime import Core

    compile_model = Core.compile_model

    def compile_f32(self, model, device_name=None, config=None):
        return compile_model(self, model, device_name, {**(config or {}), "INFERENCE_PRECISION_HINT": "f32"})

    Core.compile_model = compile_f32


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flavour", choices=["onnxruntime", "openvino", "openvino-f32"], required=True)
    parser.add_argument("--pictures", type=Path, required=True, help="folder of picture files, read in name order")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--passes-on-request", action="store_true", help="then time one loop per line read on stdin (its seconds, or one pass)")
    args = parser.parse_args(argv)
    answers = None
    if args.passes_on_request:
        answers = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)  # whatever RapidOCR prints goes to stderr

    if args.flavour == "openvino-f32":
        force_f32()
    engine = importlib.import_module(f"rapidocr_{args.flavour.split('-')[0]}").RapidOCR()
    pictures = [path.read_bytes() for path in sorted(args.pictures.iterdir())]
    engine(pictures[0])  # warm-up: the first call compiles/allocates
    lines = []
    for picture in pictures:
        result, _ = engine(picture)
        lines.append([text for _box, text, _score in (result or [])])
    result = {"flavour": args.flavour, "lines": lines}
    if answers is None:
        result.update(timed(engine, pictures, args.seconds))
    args.out.write_text(json.dumps(result))
    if answers is not None:
        answers.write("ready\n")
        for request in sys.stdin:
            answers.write(json.dumps(timed(engine, pictures, float(request.strip() or 0))) + "\n")


def timed(engine, pictures: list[bytes], seconds: float) -> dict:
    """A sequential loop over the pictures for `seconds`, at least one whole pass."""
    latencies = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(latencies) < len(pictures):
        begin = time.perf_counter()
        engine(pictures[len(latencies) % len(pictures)])
        latencies.append(time.perf_counter() - begin)
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "throughput": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] * 1000,
    }


if __name__ == "__main__":
    main()
