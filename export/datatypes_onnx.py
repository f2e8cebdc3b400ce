"""Build `datatypes_onnx`: a small ONNX graph with one elementwise op per data
type, check it with onnxruntime against numpy, and place it in the repository.

    python export/datatypes_onnx.py [--output-dir model_repository]

`references/datatypes.py` says what the graph computes; the tests check the
server against the same."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from export.common.cli import ExportArguments, done
from references.datatypes import CASES, reference_outputs


def build_graph():
    onnx_types = {
        "float32": TensorProto.FLOAT,
        "float16": TensorProto.FLOAT16,
        "int64": TensorProto.INT64,
        "int32": TensorProto.INT32,
        "uint8": TensorProto.UINT8,
        "bool": TensorProto.BOOL,
    }
    nodes, inputs, outputs, initializers = [], [], [], []
    for case in CASES:
        elem = onnx_types[case.dtype]
        inputs.append(helper.make_tensor_value_info(case.input, elem, ["batch", "n"]))
        outputs.append(helper.make_tensor_value_info(case.output, elem, ["batch", "n"]))
        if case.op == "not":
            nodes.append(helper.make_node("Not", [case.input], [case.output]))
            continue
        scale, offset = f"{case.input}_scale", f"{case.input}_offset"
        initializers.append(helper.make_tensor(scale, elem, [], [case.scale]))
        initializers.append(helper.make_tensor(offset, elem, [], [case.offset]))
        nodes.append(helper.make_node("Mul", [case.input, scale], [f"{case.input}_scaled"]))
        nodes.append(helper.make_node("Add", [f"{case.input}_scaled", offset], [case.output]))
    graph = helper.make_graph(nodes, "datatypes_onnx", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def check(path: Path) -> str:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {}
    for case in CASES:
        if case.dtype == "bool":
            feeds[case.input] = rng.integers(0, 2, (3, 5)).astype(bool)
        else:
            feeds[case.input] = rng.integers(0, 50, (3, 5)).astype(case.dtype)
    got = dict(zip([c.output for c in CASES], session.run([c.output for c in CASES], feeds)))
    want = reference_outputs(feeds)
    for name, expected in want.items():
        if got[name].dtype != expected.dtype or not np.array_equal(got[name], expected):
            raise SystemExit(f"export check failed for {name}: {got[name]} != {expected}")
    return f"checked {path} against numpy: {len(want)} outputs identical"


def main(argv=None) -> int:
    args = ExportArguments("datatypes_onnx", __doc__.splitlines()[0], "the graph built here").parse(argv)
    started = time.monotonic()
    path = args.output_dir / "datatypes_onnx" / "1" / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(build_graph(), str(path))
    return done(args, started, check(path))


if __name__ == "__main__":
    sys.exit(main())
