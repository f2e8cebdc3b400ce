"""Place the OCR model sets' networks in the repository.

    python export/ocr.py [--source FOLDER] [--output-dir model_repository]

PP-OCRv6 (the default set) comes from the `rapidocr` 3.10 package (or
`--source`, a folder with the same three files), PP-OCRv4 from
`rapidocr-onnxruntime` 1.4.4. Both sets are written side by side: v6 as
ocr_det/1/model.onnx and ocr_rec/1/model.onnx, v4 as .../ppocrv4.onnx (served
with --model-config-name=ppocrv4); the direction classifier is the same file
in both packages (ocr_cls/1/model.onnx). Each set's CTC dictionary (from the
recogniser's ONNX metadata) goes beside ocr_recognize and ocr_bls.

Every network keeps the tensor names of the PP-OCRv4 files, the interface
of ocr_det / ocr_rec whichever set is served: v6's outputs (`fetch_name_0`)
are renamed `sigmoid_0.tmp_0` and `softmax_11.tmp_0`. The recognisers gain
the two reductions CTC decoding needs (`ctc_indices`: argmax per step,
`ctc_scores`: max per step), so the OCR models ask for [n, T] instead of
[n, T, classes]. A Reshape to a scalar becomes the equivalent Squeeze, which
OpenVINO 2024.0 reads (`reshape_to_scalar_as_squeeze`). The check runs each
set's placed networks through this repository's composition and compares
with the library's own answer."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from export.common.cli import ExportArguments, done
from pipelines.ocr.models import DET_OUTPUT, REC_INDICES, REC_OUTPUT, REC_SCORES
from pipelines.ocr.params import MODEL_SETS
from pipelines.ocr.recognize import ctc_steps
from references.ocr import LIBRARY_FILES, SERVED_FILES, LibraryOCR, OfflineOCR, character_list, package_dir
from testsets.ocr import encode, render_lines

DICTIONARY_USERS = ("ocr_recognize", "ocr_bls")
OUTPUT_NAMES = {"det": DET_OUTPUT, "rec": REC_OUTPUT}
CHECK_LINES = ["export check", "PP-OCR on Triton 2026"]


def rename_output(model: onnx.ModelProto, new_name: str) -> None:
    """Rename the graph's only output (and every use of it) to `new_name`."""
    (output,) = model.graph.output
    old_name = output.name
    if old_name == new_name:
        return
    for node in model.graph.node:
        node.output[:] = [new_name if name == old_name else name for name in node.output]
        node.input[:] = [new_name if name == old_name else name for name in node.input]
    output.name = new_name


def add_ctc_reductions(model: onnx.ModelProto) -> None:
    """The recogniser with ArgMax / ReduceMax over the classes appended as
    outputs REC_INDICES / REC_SCORES (ArgMax picks the first of equal
    maxima, as numpy's argmax does)."""
    graph = model.graph
    graph.node.extend([
        helper.make_node("ArgMax", [REC_OUTPUT], [REC_INDICES], axis=2, keepdims=0, name="ctc_argmax"),
        helper.make_node("ReduceMax", [REC_OUTPUT], [REC_SCORES], axes=[2], keepdims=0, name="ctc_max"),
    ])
    steps = ["batch", "steps"]
    graph.output.extend([
        helper.make_tensor_value_info(REC_INDICES, TensorProto.INT64, steps),
        helper.make_tensor_value_info(REC_SCORES, TensorProto.FLOAT, steps),
    ])


def reshape_to_scalar_as_squeeze(model: onnx.ModelProto) -> int:
    """Each Reshape to a scalar (an empty constant shape) becomes the Squeeze
    that gives the same scalar: OpenVINO 2024.0's ONNX reader refuses an
    empty shape pattern (PP-OCRv6's recogniser has one). Returns how many."""
    constants = {init.name: init for init in model.graph.initializer}
    replaced = 0
    for index, node in enumerate(list(model.graph.node)):
        shape = constants.get(node.input[1]) if node.op_type == "Reshape" else None
        if shape is not None and 0 in shape.dims:
            model.graph.node.remove(node)
            model.graph.node.insert(index, helper.make_node("Squeeze", [node.input[0]], list(node.output), name=f"{node.name}_to_scalar"))
            replaced += 1
    used = {name for node in model.graph.node for name in node.input}
    for init in [init for init in model.graph.initializer if init.name not in used]:
        model.graph.initializer.remove(init)
    return replaced


def place_network(source: Path, target: Path, part: str) -> None:
    """Copy one network into the repository with the served interface."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if part == "cls":
        shutil.copyfile(source, target)  # a fresh mtime: make sees the copy as new
        return
    model = onnx.load(str(source))
    reshape_to_scalar_as_squeeze(model)
    rename_output(model, OUTPUT_NAMES[part])
    if part == "rec":
        add_ctc_reductions(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(target))


def check_ctc_reductions(path: Path) -> None:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).uniform(-1, 1, size=(3, 3, 48, 480)).astype(np.float32)
    softmax, indices, scores = session.run([REC_OUTPUT, REC_INDICES, REC_SCORES], {session.get_inputs()[0].name: batch})
    want_indices, want_scores = ctc_steps(softmax)
    if not (np.array_equal(indices, want_indices) and np.array_equal(scores, want_scores)):
        raise SystemExit(f"export check failed: {path}'s {REC_INDICES} / {REC_SCORES} differ from its softmax's argmax / max")


def check(output_dir: Path, set_name: str) -> str:
    """The placed networks, through this repository's composition, read a
    rendered picture as the library does."""
    picture = encode(render_lines(CHECK_LINES, size=32))
    expected = LibraryOCR(set_name)(picture).texts
    ours = OfflineOCR(output_dir, model_set_name=set_name)(picture).texts
    if ours != expected:
        raise SystemExit(f"export check failed for {set_name}: {ours} != the library's {expected}")
    check_ctc_reductions(output_dir / SERVED_FILES[set_name]["rec"])
    return f"{set_name} reads {ours} as {MODEL_SETS[set_name].library} does"


def export_set(set_name: str, source: Path, output_dir: Path) -> None:
    for part, name in LIBRARY_FILES[set_name].items():
        target = output_dir / SERVED_FILES[set_name][part]
        place_network(source / name, target, part)
        print(f"{source / name} -> {target}")
    characters = character_list(output_dir / SERVED_FILES[set_name]["rec"])
    for folder in DICTIONARY_USERS:
        path = output_dir / folder / "1" / MODEL_SETS[set_name].characters_file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(characters), encoding="utf-8")
    print(f"{set_name} CTC dictionary: {len(characters)} entries (blank + {len(characters) - 2} characters + space)")


def main(argv=None) -> int:
    args = ExportArguments("ocr", __doc__.splitlines()[0], "the rapidocr package (PP-OCRv6)").parse(argv)
    started = time.monotonic()
    sources = {"PP-OCRv6": Path(args.source) if args.source else package_dir("PP-OCRv6") / "models", "PP-OCRv4": package_dir("PP-OCRv4") / "models"}
    for set_name, source in sources.items():
        export_set(set_name, source, args.output_dir)
    return done(args, started, "checked: " + "; ".join(check(args.output_dir, set_name) for set_name in sources))


if __name__ == "__main__":
    sys.exit(main())
