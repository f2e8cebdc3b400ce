"""Place RapidOCR 1.4.4's PP-OCRv4 networks in the repository.

    python export/ocr.py [--output-dir model_repository]

Copies the det / cls / rec ONNX files that rapidocr-onnxruntime ships into
ocr_det/1, ocr_cls/1, ocr_rec/1, writes the recogniser's CTC dictionary (from
its ONNX metadata) beside ocr_recognize and ocr_bls, and checks that the copied
graphs give RapidOCR's own answers on a rendered picture.

The recogniser keeps its softmax output and gains the two reductions CTC
decoding needs (`ctc_indices`: argmax per step, `ctc_scores`: max per
step), so the OCR models ask for [n, T] instead of [n, T, 6625]: ~100 MB
less per text page between the stubs."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from export.common.cli import ExportArguments, finish
from pipelines.ocr.models import CHARACTERS_FILE, REC_INDICES, REC_OUTPUT, REC_SCORES
from pipelines.ocr.recognize import ctc_steps
from references.ocr import MODEL_FILES, OfflineOCR, character_list, rapidocr_models_dir
from testsets.ocr import encode, render_lines

TARGETS = {"det": "ocr_det", "cls": "ocr_cls", "rec": "ocr_rec"}
DICTIONARY_USERS = ("ocr_recognize", "ocr_bls")


def add_ctc_reductions(source: Path, target: Path) -> None:
    """The recogniser with ArgMax / ReduceMax over the classes appended as
    outputs REC_INDICES / REC_SCORES (ArgMax picks the first of equal
    maxima, as numpy's argmax does)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(source))
    graph = model.graph
    if len(graph.output) != 1 or graph.output[0].name != REC_OUTPUT:
        raise SystemExit(f"{source}: expected one output '{REC_OUTPUT}', found {[o.name for o in graph.output]}")
    graph.node.extend([
        helper.make_node("ArgMax", [REC_OUTPUT], [REC_INDICES], axis=2, keepdims=0, name="ctc_argmax"),
        helper.make_node("ReduceMax", [REC_OUTPUT], [REC_SCORES], axes=[2], keepdims=0, name="ctc_max"),
    ])
    steps = ["batch", "steps"]
    graph.output.extend([
        helper.make_tensor_value_info(REC_INDICES, TensorProto.INT64, steps),
        helper.make_tensor_value_info(REC_SCORES, TensorProto.FLOAT, steps),
    ])
    onnx.checker.check_model(model)
    onnx.save(model, str(target))


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
    check_ctc_reductions(output_dir / TARGETS["rec"] / "1" / "model.onnx")
    return f"checked: the exported networks read {ours.texts} as RapidOCR does; ctc_indices / ctc_scores equal the softmax's argmax / max"


def check_ctc_reductions(path: Path) -> None:
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).uniform(-1, 1, size=(3, 3, 48, 480)).astype(np.float32)
    softmax, indices, scores = session.run([REC_OUTPUT, REC_INDICES, REC_SCORES], {session.get_inputs()[0].name: batch})
    want_indices, want_scores = ctc_steps(softmax)
    if not (np.array_equal(indices, want_indices) and np.array_equal(scores, want_scores)):
        raise SystemExit(f"export check failed: {path}'s {REC_INDICES} / {REC_SCORES} differ from its softmax's argmax / max")


def main(argv=None) -> int:
    args = ExportArguments("ocr", __doc__.splitlines()[0], "the rapidocr-onnxruntime package").parse(argv)
    started = time.monotonic()
    source = Path(args.source) if args.source else rapidocr_models_dir()
    for name, folder in TARGETS.items():
        target = args.output_dir / folder / "1" / "model.onnx"
        target.parent.mkdir(parents=True, exist_ok=True)
        if name == "rec":
            add_ctc_reductions(source / MODEL_FILES[name], target)
        else:
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
