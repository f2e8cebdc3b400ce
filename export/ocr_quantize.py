"""int8 versions of the PP-OCRv6 detector and recogniser: post-training static
quantisation to ONNX QDQ with ONNX Runtime's quantiser (docs/ocr-precision.md).

    python -m export.ocr_quantize --det DET.onnx --rec REC.onnx --output-dir DIR

The recipe, and why (each rule was measured, docs/ocr-precision.md):
- Weights int8, symmetric, one scale per output channel; activations uint8,
  one scale per tensor, MinMax ranges from calibration pictures the pipeline
  has prepared (below). QDQ format at opset 13 (per-channel DequantizeLinear
  needs 13): OpenVINO runs it as int8, and so does ONNX Runtime.
- Detector: every Conv. The DB head's two ConvTranspose and its Sigmoid stay
  float (not in the quantised op types): they draw the probability map.
- Recogniser: every Conv and MatMul except the classifier (the last MatMul,
  120 -> 18,710 characters, feeding the Softmax), which stays float.
- The first Conv of each network (the one reading the picture) stays float:
  ONNX Runtime 1.22's int8 kernel gives a wrong first convolution on CPUs
  with AVX512-VNNI / AMX (microsoft/onnxruntime#26324; seen here: detector
  boxes lost on every page). It is a small layer; keeping it float costs
  nothing measurable.
- A dense Conv with a kernel over 1x1 whose input range is signed gets int8
  activations symmetric around zero (zero point 0) instead of uint8 with a
  zero point: OpenVINO 2024.0's int8 kernel answers wrongly for such a Conv
  with a zero point once the feature map is 256 or more wide (the detector's
  head Conv over the 96-channel concatenation: a third of the boxes lost on
  pages 1,000 px wide or more; symmetric, it matches ONNX Runtime exactly).

Calibration pictures are generated pages with seeds other than the test
pages' (testsets.documents: 2026, testsets.multilingual: 36). The inputs are
what RapidOCR 3.10's own pipeline hands its networks on those pages: the
detector's input as its DetPreProcess makes it, the recogniser's groups of 6
crops (cut by get_rotate_crop_image, turned by the classifier) sorted by
width and resized by TextRecognizer.resize_norm_img to 48 x W,
W = int(48 * max(320/48, widest ratio in the group)).

Same inputs, same ONNX Runtime: the same bytes out."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import onnx
from onnx import helper, version_converter
from onnxruntime import __version__ as ORT_VERSION
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantType
from onnxruntime.quantization.calibrate import TensorsData, create_calibrator
from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
from onnxruntime.quantization.quant_utils import load_model_with_shape_infer
from onnxruntime.quantization.shape_inference import quant_pre_process

from export.common.onnx_files import save_onnx
from testsets import documents, multilingual

CALIBRATION_SEEDS = {"documents": 1201, "multilingual": 1236}
"""Seeds of the calibration pages; the test pages are seeds 2026 and 36."""
QDQ_OPSET = 13
CALIBRATION_CHUNK = 4
METADATA_KEY = "quantization"


@dataclass
class CalibrationSet:
    """Network inputs as the pipeline makes them."""

    det: list[np.ndarray]  # each 1 x 3 x H x W
    rec: list[np.ndarray]  # each n x 3 x 48 x W, n <= 6

    def describe(self) -> str:
        widths = sorted(group.shape[3] for group in self.rec)
        return f"{len(self.det)} detector pages, {len(self.rec)} recogniser groups (W {widths[0]}-{widths[-1]})" if widths else f"{len(self.det)} detector pages"


@dataclass(frozen=True)
class Plan:
    """Which operators of a network become int8."""

    op_types: tuple[str, ...]
    keep_float: Callable[[onnx.GraphProto], set[str]]  # node names that stay float


def first_convs(graph: onnx.GraphProto) -> set[str]:
    """The Conv nodes reading a graph input (the picture)."""
    inputs = {value.name for value in graph.input}
    return {node.name for node in graph.node if node.op_type == "Conv" and node.input[0] in inputs}


def classifier(graph: onnx.GraphProto) -> set[str]:
    """The recogniser's last MatMul: features -> one logit per character."""
    matmuls = [node.name for node in graph.node if node.op_type == "MatMul"]
    return set(matmuls[-1:])


DET_PLAN = Plan(("Conv",), first_convs)
REC_PLAN = Plan(("Conv", "MatMul"), lambda graph: first_convs(graph) | classifier(graph))


def calibration_pictures(document_pages: int = 16, multilingual_pages: int = 4) -> list[bytes]:
    """Generated pages that are not the test pages; the multilingual ones
    only where the CJK fonts are installed (`make fonts`)."""
    pictures = [page.data for page in documents.pages(document_pages, seed=CALIBRATION_SEEDS["documents"])]
    if multilingual_pages and multilingual.cjk_fonts_missing() is None:
        pictures += [page.data for page in multilingual.pages(multilingual_pages, seed=CALIBRATION_SEEDS["multilingual"])]
    return pictures


class _Recorder:
    """Wraps an inference session: keeps a copy of every input, answers as the session does."""

    def __init__(self, session):
        self.session, self.inputs = session, []

    def __call__(self, batch: np.ndarray):
        self.inputs.append(np.array(batch, copy=True))
        return self.session(batch)

    def __getattr__(self, name):
        return getattr(self.session, name)


def rec_groups(recognizer, crops: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The recogniser's input groups for `crops`, as rapidocr's TextRecognizer
    builds them: narrowest first, rec_batch_num at a time, every crop resized
    to the group's widest ratio (at least the configured W / H)."""
    channels, height, width = recognizer.rec_image_shape[:3]
    ratios = np.array([crop.shape[1] / float(crop.shape[0]) for crop in crops])
    order = np.argsort(ratios)
    groups = []
    for start in range(0, len(crops), recognizer.rec_batch_num):
        members = order[start:start + recognizer.rec_batch_num]
        widest = max(width / height, float(ratios[members].max()))
        groups.append(np.stack([recognizer.resize_norm_img(crops[index], widest) for index in members]).astype(np.float32))
    return groups


def spread(items: list, count: int, key: Callable) -> list:
    """`count` items evenly spaced over `items` sorted by `key` (all if fewer)."""
    ordered = sorted(items, key=key)
    if len(ordered) <= count:
        return ordered
    return [ordered[int(index)] for index in np.linspace(0, len(ordered) - 1, count)]


def calibration_set(pictures: Iterable[bytes], rec_group_count: int = 64) -> CalibrationSet:
    """Run RapidOCR 3.10 (f32, its own PP-OCRv6 files) on `pictures` up to the
    recogniser: record the detector's inputs and build the recogniser's groups."""
    from rapidocr import RapidOCR  # lazy: only calibration needs the library
    from rapidocr.main import RapidOCRError  # likewise

    ocr = RapidOCR(params={"Global.log_level": "warning"})
    detector, recognizer = ocr._load_det_model(), ocr._load_rec_model()
    recorder = detector.session = _Recorder(detector.session)
    groups = []
    for picture in pictures:
        image, record = ocr.preprocess_img(ocr.load_img(picture))
        try:
            crops, _ = ocr.detect_and_crop(image, record)
        except RapidOCRError:  # no text found: the detector's input still counts
            continue
        turned, _ = ocr.cls_and_rotate(crops)
        groups += rec_groups(recognizer, turned)
    return CalibrationSet(recorder.inputs, spread(groups, rec_group_count, key=lambda group: group.shape[3]))


class _Batches(CalibrationDataReader):
    def __init__(self, input_name: str, batches: Sequence[np.ndarray]):
        self.feeds = iter([{input_name: batch} for batch in batches])

    def get_next(self):
        return next(self.feeds, None)


def _calibrate(model_path: Path, batches: Sequence[np.ndarray], op_types: tuple[str, ...], work: Path) -> TensorsData:
    input_name = onnx.load(str(model_path), load_external_data=False).graph.input[0].name
    calibrator = create_calibrator(model_path, list(op_types), augmented_model_path=str(work / "augmented.onnx"), calibrate_method=CalibrationMethod.MinMax)
    # a few batches at a time: the calibrator keeps every output of the batches
    # it is given (the recogniser's is n x T x 18,710), and MinMax merges exactly
    for start in range(0, len(batches), CALIBRATION_CHUNK):
        calibrator.collect_data(_Batches(input_name, batches[start:start + CALIBRATION_CHUNK]))
    return calibrator.compute_data()


def _signed_wide_kernel_inputs(model: onnx.ModelProto, nodes: set[str], ranges: TensorsData) -> list[str]:
    """Inputs of the quantised dense Convs with a kernel over 1x1 whose
    calibrated range goes below zero (the OpenVINO 2024.0 rule, module doc)."""
    weights = {init.name: init.dims for init in model.graph.initializer}
    signed = []
    for node in model.graph.node:
        if node.name not in nodes or node.op_type != "Conv":
            continue
        group = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "group"), 1)
        kernel = weights.get(node.input[1], [0, 0, 1, 1])[2:]
        tensor = ranges.data.get(node.input[0])
        if group == 1 and int(np.prod(kernel)) > 1 and tensor is not None and float(np.min(tensor.range_value[0])) < 0:
            signed.append(node.input[0])
    return signed


def _prepared(source: Path, work: Path) -> Path:
    """`source` at opset 13 with ONNX Runtime's pre-quantisation pass
    (shape inference; BatchNorm and bias Adds folded into the Convs)."""
    model = onnx.load(str(source))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < QDQ_OPSET:
        model = version_converter.convert_version(model, QDQ_OPSET)
    upgraded, prepared = work / "upgraded.onnx", work / "prepared.onnx"
    onnx.save(model, str(upgraded))
    quant_pre_process(str(upgraded), str(prepared), skip_symbolic_shape=True)
    return prepared


def quantize_network(source: Path, batches: Sequence[np.ndarray], plan: Plan, target: Path) -> dict:
    """Write the int8 (QDQ) version of the ONNX network `source` to `target`,
    calibrated on `batches`; returns what was done (also in the file's
    metadata under METADATA_KEY)."""
    if not batches:
        raise ValueError(f"no calibration inputs for {source}")
    with tempfile.TemporaryDirectory(prefix="ocr-quantize-") as folder:
        work = Path(folder)
        prepared = _prepared(source, work)
        ranges = _calibrate(prepared, batches, plan.op_types, work)
        model = load_model_with_shape_infer(prepared)
    keep_float = plan.keep_float(model.graph)
    nodes = {node.name for node in model.graph.node if node.op_type in plan.op_types and node.name not in keep_float}
    symmetric = _signed_wide_kernel_inputs(model, nodes, ranges)
    overrides = {name: [{"quant_type": QuantType.QInt8, "symmetric": True}] for name in symmetric}
    quantizer = QDQQuantizer(model, True, False, QuantType.QInt8, QuantType.QUInt8, ranges, sorted(nodes), [], list(plan.op_types), {"TensorQuantOverrides": overrides})
    quantizer.quantize_model()
    summary = {
        "tool": f"onnxruntime {ORT_VERSION} QDQ, MinMax, weights int8 per channel, activations uint8 per tensor",
        "quantized": len(nodes),
        "float": sorted(keep_float),
        "symmetric_int8_inputs": symmetric,
        "calibration_batches": len(batches),
    }
    quantized = quantizer.model.model
    helper.set_model_props(quantized, {**{p.key: p.value for p in quantized.metadata_props}, METADATA_KEY: json.dumps(summary)})
    target.parent.mkdir(parents=True, exist_ok=True)
    save_onnx(quantized, target)
    return summary


def quantize_pair(det_source: Path, rec_source: Path, det_target: Path, rec_target: Path, calibration: CalibrationSet | None = None) -> dict:
    """Both networks, calibrated on `calibration` (default: generated pages, CALIBRATION_SEEDS)."""
    calibration = calibration or calibration_set(calibration_pictures())
    return {
        "calibration": calibration.describe(),
        "det": quantize_network(det_source, calibration.det, DET_PLAN, det_target),
        "rec": quantize_network(rec_source, calibration.rec, REC_PLAN, rec_target),
    }


def int8_weights(model: onnx.ModelProto) -> int:
    """How many int8 weight tensors the network dequantises (0 for a float network)."""
    int8 = {init.name for init in model.graph.initializer if init.data_type == onnx.TensorProto.INT8}
    return sum(1 for node in model.graph.node if node.op_type == "DequantizeLinear" and node.input[0] in int8)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--det", type=Path, required=True, help="the detector's ONNX file")
    parser.add_argument("--rec", type=Path, required=True, help="the recogniser's ONNX file")
    parser.add_argument("--output-dir", type=Path, required=True, help="writes det_int8.onnx and rec_int8.onnx there")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    calibration = calibration_set(calibration_pictures())
    print(f"calibration: {calibration.describe()} ({time.perf_counter() - started:.0f} s)")
    summary = quantize_pair(args.det, args.rec, args.output_dir / "det_int8.onnx", args.output_dir / "rec_int8.onnx", calibration)
    print(json.dumps(summary, indent=1))
    print(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
