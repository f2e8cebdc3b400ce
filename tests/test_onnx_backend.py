"""The Python-based `onnxruntime` backend serves configs written for Triton's
native ONNX Runtime backend: every data type, requests of different shapes
in one execute each get their rows, a wrong rank names the tensor. (Wrong
dtype, batching: tests/test_contracts.py; the backend's code in-process:
tests/test_serving_glue.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from triton_helpers import grpc_fire_all, make_inputs, make_outputs
from tritonclient.utils import InferenceServerException

from references.datatypes import CASES, reference_outputs

OUTPUT_NAMES = [case.output for case in CASES]


def feeds(batch: int, length: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tensors = {}
    for case in CASES:
        if case.dtype == "bool":
            tensors[case.input] = rng.integers(0, 2, (batch, length)).astype(bool)
        else:
            tensors[case.input] = rng.integers(0, 60, (batch, length)).astype(case.dtype)
    return tensors


def assert_matches_reference(sent, result) -> None:
    for name, want in reference_outputs(sent).items():
        got = result.as_numpy(name)
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_every_dtype_over_http(http_client, binary):
    sent = feeds(batch=2, length=6, seed=1)
    outputs = make_outputs(httpclient, [n for n in OUTPUT_NAMES if n != "y_fp16"], binary)
    outputs += make_outputs(httpclient, ["y_fp16"], binary=True)  # JSON has no FP16
    assert_matches_reference(sent, http_client.infer("datatypes_onnx", make_inputs(httpclient, sent, binary), outputs=outputs))


def test_every_dtype_over_grpc(grpc_client):
    sent = feeds(batch=3, length=4, seed=2)
    assert_matches_reference(sent, grpc_client.infer("datatypes_onnx", make_inputs(grpcclient, sent)))


def test_mixed_shapes_and_batch_sizes_each_get_their_rows(grpc_client):
    shapes = [(1, 4), (2, 4), (3, 7), (1, 7), (4, 4), (2, 9), (1, 4), (3, 7)] * 4
    samples = [feeds(batch, length, seed=10 + i) for i, (batch, length) in enumerate(shapes)]
    requests = [make_inputs(grpcclient, sent) for sent in samples]
    for sent, (result, error, _) in zip(samples, grpc_fire_all(grpc_client, "datatypes_onnx", requests)):
        assert error is None, error
        assert_matches_reference(sent, result)


def test_model_metadata_matches_config(http_client):
    metadata = http_client.get_model_metadata("datatypes_onnx")
    inputs = {t["name"]: (t["datatype"], t["shape"]) for t in metadata["inputs"]}
    assert inputs["x_fp16"] == ("FP16", [-1, -1])
    assert inputs["x_bool"] == ("BOOL", [-1, -1])


def test_wrong_rank_names_the_tensor(grpc_client):
    sent = feeds(batch=1, length=3, seed=4)
    sent["x_fp32"] = np.zeros((1, 3, 2), np.float32)
    with pytest.raises(InferenceServerException, match="x_fp32"):
        grpc_client.infer("datatypes_onnx", make_inputs(grpcclient, sent))
    good = feeds(batch=1, length=3, seed=5)
    assert_matches_reference(good, grpc_client.infer("datatypes_onnx", make_inputs(grpcclient, good)))
