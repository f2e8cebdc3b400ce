"""The PP-OCRv6 detector and recogniser in int8, beside their f32 files.

    python export/ocr_int8.py [--output-dir model_repository]

Post-training static quantisation (export/ocr_quantize.py, calibrated on
generated pages that are not the test pages) of the networks export/ocr.py
placed: ocr_det/1/model.onnx -> model_int8.onnx, ocr_rec/1/model.onnx ->
model_int8.onnx, with the same tensor names. Served by
--model-config-name=int8 (both networks) and =fast (the int8 detector with
the bf16 recogniser). The check reads a rendered page with the int8
networks, on onnxruntime, as the f32 ones read it."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from export.common.cli import ExportArguments, done
from export.ocr import CHECK_LINES
from export.ocr_quantize import quantize_pair
from references.ocr import SERVED_FILES, OfflineOCR
from testsets.ocr import encode, render_lines

INT8_FILE = "model_int8.onnx"


def check(output_dir: Path) -> str:
    """The int8 networks, through this repository's composition, read the check page as f32 does."""
    picture = encode(render_lines(CHECK_LINES, size=32))
    expected = OfflineOCR(output_dir)(picture).texts
    with tempfile.TemporaryDirectory() as scratch:
        for part in ("det", "cls", "rec"):
            placed = output_dir / SERVED_FILES["PP-OCRv6"][part]
            target = Path(scratch) / SERVED_FILES["PP-OCRv6"][part]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(placed.with_name(INT8_FILE) if part != "cls" else placed)
        ours = OfflineOCR(scratch)(picture).texts
    if ours != expected:
        raise SystemExit(f"export check failed: the int8 networks read {ours}, f32 reads {expected}")
    return f"the int8 networks read {ours} as f32 does"


def main(argv=None) -> int:
    args = ExportArguments("ocr_int8", __doc__.splitlines()[0], "the networks export/ocr.py placed").parse(argv)
    started = time.monotonic()
    det, rec = (args.output_dir / SERVED_FILES["PP-OCRv6"][part] for part in ("det", "rec"))
    summary = quantize_pair(det, rec, det.with_name(INT8_FILE), rec.with_name(INT8_FILE))
    print(f"{det.with_name(INT8_FILE)}, {rec.with_name(INT8_FILE)}: {summary['calibration']}")
    return done(args, started, f"quantised ({summary['calibration']}); checked: {check(args.output_dir)}")


if __name__ == "__main__":
    sys.exit(main())
