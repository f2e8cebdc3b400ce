"""Place RapidOCR 1.4.4's PP-OCRv4 networks in the repository.

    python export/ocr.py [--output-dir model_repository]

Copies the det / cls / rec ONNX files that rapidocr-onnxruntime ships into
ocr_det/1, ocr_cls/1, ocr_rec/1, writes the recogniser's CTC dictionary (from
its ONNX metadata) beside ocr_recognize and ocr_bls, and checks that the copied
graphs give RapidOCR's own answers on a rendered picture."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from export.common.cli import ExportArguments, finish
from pipelines.ocr.models import CHARACTERS_FILE
from tools.references.ocr import MODEL_FILES, OfflineOCR, character_list, rapidocr_models_dir
from tools.testsets.ocr import encode, render_lines

TARGETS = {"det": "ocr_det", "cls": "ocr_cls", "rec": "ocr_rec"}
DICTIONARY_USERS = ("ocr_recognize", "ocr_bls")


def check(output_dir: Path) -> str:
    from rapidocr_onnxruntime import RapidOCR

    with tempfile.TemporaryDirectory() as scratch:
        for name, folder in TARGETS.items():
            shutil.copyfile(output_dir / folder / "1" / "model.onnx", Path(scratch) / MODEL_FILES[name])
        picture = encode(render_lines(["export check", "PP-OCRv4 on Triton"], size=32))
        reference, _ = RapidOCR()(picture)
        ours = OfflineOCR(scratch)(picture)
    expected = [text for _, text, _ in reference or []]
    if ours.texts != expected:
        raise SystemExit(f"export check failed: {ours.texts} != RapidOCR's {expected}")
    return f"checked: the exported networks read {ours.texts} as RapidOCR does"


def main(argv=None) -> int:
    args = ExportArguments("ocr", __doc__.splitlines()[0], "the rapidocr-onnxruntime package").parse(argv)
    started = time.monotonic()
    source = Path(args.source) if args.source else rapidocr_models_dir()
    for name, folder in TARGETS.items():
        target = args.output_dir / folder / "1" / "model.onnx"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / MODEL_FILES[name], target)  # a fresh mtime: make sees the copy as new
        print(f"{source / MODEL_FILES[name]} -> {target}")
    characters = character_list(source / MODEL_FILES["rec"])
    for folder in DICTIONARY_USERS:
        path = args.output_dir / folder / "1" / CHARACTERS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(characters), encoding="utf-8")
    print(f"CTC dictionary: {len(characters)} entries (blank + {len(characters) - 2} characters + space)")
    summary = check(args.output_dir)
    print(summary)
    finish(args, "ocr", started, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
