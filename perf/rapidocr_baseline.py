"""A RapidOCR library called sequentially in one process, as a user would:
the baseline rows of the OCR suite. Self-contained (imports only the library
and the standard library), so it runs in whichever venv holds the flavour:

- `rapidocr3-onnxruntime`: rapidocr 3.10, its default engine (main venv);
- `rapidocr3-openvino`, `rapidocr3-openvino-f32`: rapidocr 3.10 on its
  openvino engine, at OpenVINO's default precision (bf16 on CPUs with
  AVX512_BF16 or AMX) or forced to f32 (build/venv-rapidocr3-openvino);
- `rapidocr-onnxruntime`: rapidocr-onnxruntime 1.4.4 (main venv);
- `rapidocr-openvino`, `rapidocr-openvino-f32`: rapidocr-openvino 1.4.4
  (build/venv-rapidocr-openvino).

    python perf/rapidocr_baseline.py --flavour rapidocr3-openvino --pictures DIR --out result.json

Writes the lines of every picture (one call each, after a warm-up: text, the
box's 8 coordinates, score), then stays up, warm: each line on its standard
input (`SECONDS`, or empty for one pass) times one more sequential loop over
the pictures (the first `--timed` of them) and answers one JSON line (throughput, p50_ms, p95_ms, cpu_ms per picture) on its
standard output. The library's own prints go to standard error."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

FLAVOURS = ("rapidocr3-onnxruntime", "rapidocr3-openvino", "rapidocr3-openvino-f32", "rapidocr-onnxruntime", "rapidocr-openvino", "rapidocr-openvino-f32")


def force_f32() -> None:
    """Every OpenVINO model compiled with INFERENCE_PRECISION_HINT f32 (what
    the served openvino backend uses): on CPUs with AVX512_BF16 or AMX the
    default hint is bf16, faster and with other numerics."""
    import openvino  # the flavour's venv has it; the onnxruntime flavours run where it may not be

    core_class = openvino.Core if hasattr(openvino, "Core") else importlib.import_module("openvino.runtime").Core
    compile_model = core_class.compile_model

    def compile_f32(self, model, device_name=None, config=None):
        return compile_model(self, model, device_name, {**(config or {}), "INFERENCE_PRECISION_HINT": "f32"})

    core_class.compile_model = compile_f32


class Library:
    """The flavour's engine; `read(picture)` -> [(text, box 8 floats, score)]."""

    def __init__(self, flavour: str):
        if flavour.endswith("-f32"):
            force_f32()
        self.version3 = flavour.startswith("rapidocr3")
        if self.version3:
            from rapidocr import EngineType, RapidOCR  # 3.x: only in the venvs of the rapidocr3 flavours

            engine = EngineType.OPENVINO if "openvino" in flavour else EngineType.ONNXRUNTIME
            self.engine = RapidOCR(params={"Global.log_level": "warning", **{f"{part}.engine_type": engine for part in ("Det", "Cls", "Rec")}})
        else:
            self.engine = importlib.import_module(f"rapidocr_{flavour.split('-')[1]}").RapidOCR()

    def __call__(self, picture: bytes):
        return self.engine(picture)

    def read(self, picture: bytes) -> list:
        if self.version3:
            result = self.engine(picture)
            rows = zip(result.boxes, result.txts, result.scores) if result.txts else []
        else:
            rows = self.engine(picture)[0] or []
        return [(text, [float(v) for point in box for v in point], float(score)) for box, text, score in rows]


def timed(engine, pictures: list[bytes], seconds: float) -> dict:
    """A sequential loop over the pictures for `seconds`, at least one whole pass."""
    latencies = []
    start, cpu_start = time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds or len(latencies) < len(pictures):
        begin = time.perf_counter()
        engine(pictures[len(latencies) % len(pictures)])
        latencies.append(time.perf_counter() - begin)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    latencies.sort()
    return {
        "throughput": len(latencies) / elapsed,
        "cpu_ms": cpu / len(latencies) * 1000,  # every thread of the process, per picture
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] * 1000,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flavour", choices=FLAVOURS, required=True)
    parser.add_argument("--pictures", type=Path, required=True, help="folder of picture files, read in name order")
    parser.add_argument("--timed", type=int, default=0, help="time the first N pictures only (default: all)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the library prints goes to stderr

    library = Library(args.flavour)
    pictures = [path.read_bytes() for path in sorted(args.pictures.iterdir())]
    library(pictures[0])  # warm-up: the first call compiles/allocates
    args.out.write_text(json.dumps({"flavour": args.flavour, "lines": [library.read(picture) for picture in pictures]}))
    answers.write("ready\n")
    for request in sys.stdin:
        answers.write(json.dumps(timed(library, pictures[: args.timed or None], float(request.strip() or 0))) + "\n")


if __name__ == "__main__":
    main()
