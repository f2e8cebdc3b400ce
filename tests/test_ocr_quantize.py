"""The int8 PP-OCRv6 networks (export/ocr_quantize.py): they hold int8
weights, keep the layers the recipe keeps float, run in ONNX Runtime and
OpenVINO, and read rendered lines as the f32 networks do. Calibrated on one
small rendered picture (the export calibrates on generated pages): enough
for these lines, and fast."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
import pytest
from rapidocr import RapidOCR

from export.ocr_quantize import (
    DET_PLAN,
    METADATA_KEY,
    REC_PLAN,
    calibration_set,
    classifier,
    first_convs,
    int8_weights,
    quantize_network,
    spread,
)
from references.ocr import LIBRARY_FILES, package_dir
from testsets.ocr import encode, render_lines

CALIBRATION_LINES = ["Invoice 40917 due 12.03.2026", "Subtotal 1,284.50 EUR", "Harbour Lane 67, 23029 London", "Please transfer the total within 14 days"]
READ_LINES = ["Quantised networks read this line", "Total due 2,046.75", "Lindenweg 9, 97278 Leeds"]


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    """f32 and int8 files of both networks."""
    models = package_dir("PP-OCRv6") / "models"
    f32 = {part: models / LIBRARY_FILES["PP-OCRv6"][part] for part in ("det", "rec", "cls")}
    calibration = calibration_set([encode(render_lines(CALIBRATION_LINES, size=30))])
    folder = tmp_path_factory.mktemp("int8")
    int8 = {"det": folder / "det_int8.onnx", "rec": folder / "rec_int8.onnx"}
    summaries = {
        "det": quantize_network(f32["det"], calibration.det, DET_PLAN, int8["det"]),
        "rec": quantize_network(f32["rec"], calibration.rec, REC_PLAN, int8["rec"]),
    }
    return f32, int8, summaries, calibration


def test_int8_weights_everywhere_but_the_layers_kept_float(networks):
    f32, int8, summaries, _ = networks
    plans = {"det": DET_PLAN, "rec": REC_PLAN}
    for part in ("det", "rec"):
        source, model = onnx.load(str(f32[part])), onnx.load(str(int8[part]))
        kept = first_convs(source.graph) | (classifier(source.graph) if part == "rec" else set())
        assert summaries[part]["float"] == sorted(kept) and summaries[part]["float"]
        assert int8_weights(source) == 0
        weights = {init.name for init in source.graph.initializer}
        weighted = [node for node in source.graph.node if node.op_type in plans[part].op_types and node.input[1] in weights]
        assert int8_weights(model) == len(weighted) - len(kept) >= 50  # every layer with weights but the float ones
        dequantised = {node.output[0] for node in model.graph.node if node.op_type == "DequantizeLinear"}
        for node in model.graph.node:  # the float layers read float weights
            if node.name in kept:
                assert node.input[1] not in dequantised
        metadata = {prop.key for prop in model.metadata_props}
        assert METADATA_KEY in metadata and ("character" in metadata) == (part == "rec")
        assert model.graph.input[0].name == source.graph.input[0].name
        assert [o.name for o in model.graph.output] == [o.name for o in source.graph.output]
    assert summaries["det"]["symmetric_int8_inputs"]  # the head's Conv over the signed concatenation


def test_the_int8_pipeline_reads_rendered_lines_as_f32_does(networks):
    f32, int8, _, _ = networks
    picture = encode(render_lines(READ_LINES, size=30))
    library = RapidOCR(params={"Global.log_level": "warning"})
    quantised = RapidOCR(params={"Global.log_level": "warning", "Det.model_path": str(int8["det"]), "Rec.model_path": str(int8["rec"])})
    assert list(quantised(picture).txts) == list(library(picture).txts) == READ_LINES


def test_openvino_and_onnxruntime_run_the_int8_networks_close_to_f32(networks):
    f32, int8, _, calibration = networks
    core = ov.Core()
    properties = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2}
    page, group = np.ascontiguousarray(calibration.det[0][..., :640]), calibration.rec[0]  # a part of the page: faster, the same check
    text = run_onnxruntime(f32["det"], page) > 0.3
    for int8_map in (core.compile_model(str(int8["det"]), "CPU", properties)(page)[0], run_onnxruntime(int8["det"], page)):
        assert text.any() and ((int8_map > 0.3) == text).mean() > 0.99
    # OpenVINO 2024.0 cannot read the f32 recogniser as shipped (a Reshape to a scalar); the int8 one it reads
    characters = ctc_characters(run_onnxruntime(f32["rec"], group))
    for int8_steps in (core.compile_model(str(int8["rec"]), "CPU", properties)(group)[0], run_onnxruntime(int8["rec"], group)):
        assert ctc_characters(int8_steps) == characters


def ctc_characters(steps: np.ndarray) -> list[list[int]]:
    """Greedy CTC per line: the best class per step, repeats merged, blanks (0) dropped."""
    best = steps.argmax(-1)
    return [[int(c) for i, c in enumerate(line) if c != 0 and (i == 0 or c != line[i - 1])] for line in best]


def run_onnxruntime(path, batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch})[0]


def test_spread_keeps_the_extremes_and_the_count():
    assert spread(list(range(10)), 4, key=lambda x: -x) == [9, 6, 3, 0]
    assert spread([3, 1], 5, key=lambda x: x) == [1, 3]
