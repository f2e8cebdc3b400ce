"""OnnxModel (the logic behind backends/onnxruntime) in-process, on the
exported datatypes_onnx graph: grouping, splitting and error paths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_onnx_backend import feeds

from pipelines.datatypes_onnx import reference_outputs
from pipelines.serving.onnx_model import OnnxModel, choose_providers
from pipelines.serving.tensors import RequestError

MODEL_DIR = Path(__file__).resolve().parents[1] / "model_repository" / "datatypes_onnx"


def config_dict() -> dict:
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse((MODEL_DIR / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    return json.loads(json_format.MessageToJson(config, preserving_proto_field_name=True))


@pytest.fixture(scope="module")
def model():
    if not (MODEL_DIR / "1" / "model.onnx").exists():
        pytest.fail("model_repository/datatypes_onnx/1/model.onnx missing: run `make export`")
    return OnnxModel(config_dict(), str(MODEL_DIR), "1")


def test_requests_with_different_shapes_in_one_execute(model):
    requests = [feeds(2, 3, 1), feeds(1, 5, 2), feeds(3, 3, 3), feeds(1, 5, 4)]
    answers = model.infer(requests)
    for sent, answer in zip(requests, answers):
        for name, want in reference_outputs(sent).items():
            np.testing.assert_array_equal(answer[name], want)


def test_one_bad_request_does_not_spoil_the_batch(model):
    bad = feeds(1, 3, 5)
    bad["x_uint8"] = bad["x_uint8"].astype(np.float32)
    missing = feeds(1, 3, 6)
    del missing["x_bool"]
    good = feeds(2, 3, 7)
    answers = model.infer([bad, good, missing])
    assert isinstance(answers[0], RequestError) and "x_uint8" in str(answers[0]) and "UINT8" in str(answers[0])
    assert isinstance(answers[2], RequestError) and "missing input tensor 'x_bool'" in str(answers[2])
    np.testing.assert_array_equal(answers[1]["y_fp32"], reference_outputs(good)["y_fp32"])


def test_batch_limit(model):
    answer = model.infer([feeds(17, 2, 8)])[0]
    assert isinstance(answer, RequestError) and "exceeds max_batch_size 16" in str(answer)


def test_thread_parameters_are_applied(model):
    options = model.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.inter_op_num_threads == 1


def test_provider_choice():
    gpu_trt = {"optimization": {"execution_accelerators": {"gpu_execution_accelerator": [{"name": "tensorrt"}]}}}
    everything = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers({}, "CPU", 0, everything) == ["CPUExecutionProvider"]
    assert [p[0] if isinstance(p, tuple) else p for p in choose_providers(gpu_trt, "GPU", 1, everything)] == everything
    assert choose_providers(gpu_trt, "GPU", 0, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
