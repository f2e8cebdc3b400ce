"""What `datatypes_onnx` computes: one elementwise op per data type
(`CASES`), and the same in numpy (`reference_outputs`). The export builds the
graph from it; the tests and benchmarks check the server against it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Case:
    input: str
    output: str
    dtype: str
    op: str  # "affine" (x * scale + offset) or "not"
    scale: float = 1
    offset: float = 0


CASES = (
    Case("x_fp32", "y_fp32", "float32", "affine", 2.0, 1.0),
    Case("x_fp16", "y_fp16", "float16", "affine", 0.5, -1.0),
    Case("x_int64", "y_int64", "int64", "affine", 3, 1),
    Case("x_int32", "y_int32", "int32", "affine", -1, 7),
    Case("x_uint8", "y_uint8", "uint8", "affine", 1, 5),
    Case("x_bool", "y_bool", "bool", "not"),
)


def reference_outputs(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    outputs = {}
    for case in CASES:
        x = inputs[case.input]
        if case.op == "not":
            outputs[case.output] = np.logical_not(x)
        else:
            dtype = np.dtype(case.dtype)
            outputs[case.output] = (x * dtype.type(case.scale) + dtype.type(case.offset)).astype(dtype)
    return outputs
