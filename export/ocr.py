"""Place RapidOCR 1.4.4's PP-OCRv4 networks in the repository.

    python export/ocr.py [--output-dir model_repository]

Copies the det / cls / rec ONNX files that rapidocr-onnxruntime ships into
ocr_det/1, ocr_cls/1, ocr_rec/1, writes the recogniser's CTC dictionary (from
its ONNX metadata) beside ocr_recognize and ocr_bls, and checks that the copied
graphs give RapidOCR's own answers on a rendered picture."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from pipelines.ocr.models import CHARACTERS_FILE  # noqa: E402
from pipelines.ocr.params import MODEL_FILES, character_list, rapidocr_models_dir  # noqa: E402

TARGETS = {"det": "ocr_det", "cls": "ocr_cls", "rec": "ocr_rec"}
DICTIONARY_USERS = ("ocr_recognize", "ocr_bls")


def check(output_dir: Path) -> None:
    from rapidocr_onnxruntime import RapidOCR

    from pipelines.ocr.offline import OfflineOCR
    from pipelines.ocr.testset import encode, render_lines

    scratch = output_dir / ".ocr_check"
    scratch.mkdir(exist_ok=True)
    for name, folder in TARGETS.items():
        shutil.copy2(output_dir / folder / "1" / "model.onnx", scratch / MODEL_FILES[name])
    picture = encode(render_lines(["export check", "PP-OCRv4 on Triton"], size=32))
    reference, _ = RapidOCR()(picture)
    ours = OfflineOCR(scratch)(picture)
    shutil.rmtree(scratch)
    expected = [text for _, text, _ in reference or []]
    if ours.texts != expected:
        raise SystemExit(f"export check failed: {ours.texts} != RapidOCR's {expected}")
    print(f"checked: the exported networks read {ours.texts} as RapidOCR does")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "model_repository")
    args = parser.parse_args(argv)
    source = rapidocr_models_dir()
    for name, folder in TARGETS.items():
        target = args.output_dir / folder / "1" / "model.onnx"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / MODEL_FILES[name], target)
        print(f"{source / MODEL_FILES[name]} -> {target}")
    characters = character_list(source / MODEL_FILES["rec"])
    for folder in DICTIONARY_USERS:
        path = args.output_dir / folder / "1" / CHARACTERS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(characters), encoding="utf-8")
    print(f"CTC dictionary: {len(characters)} entries (blank + {len(characters) - 2} characters + space)")
    check(args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
