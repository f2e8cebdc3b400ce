"""The serving glue in plain pytest, through the stand-in pb_utils: the
partition primitive, `python_model_class` (request reading, validation,
answer writing, sync and async), strictness about answer counts, BLS calls,
and the Python-based onnxruntime backend's network model."""

from __future__ import annotations

import asyncio
import json

import fake_pb_utils as pb
import numpy as np
import pytest
from inprocess import error_of, install_fake_pb_utils, outputs_of

from references.datatypes import CASES, reference_outputs
from pipelines.serving.bls import Bls, ModelCallError
from pipelines.serving.network import choose_providers
from pipelines.serving.partition import Partition, ResultCountError, answer_each, per_item, per_item_async
from pipelines.serving.python_model import python_model_class
from pipelines.serving.tensors import RequestError

install_fake_pb_utils()


# ---------------------------------------------------------------- the partition primitive


def positive(x: int) -> int:
    if x < 0:
        raise RequestError(f"item {x} is negative")
    return x


def test_partition_sets_refusals_aside_and_puts_results_back():
    answers = answer_each([3, -1, 4, -5, 6], positive, lambda valid: [v * 10 for v in valid])
    assert [a if not isinstance(a, Exception) else str(a) for a in answers] == [30, "item -1 is negative", 40, "item -5 is negative", 60]


def test_partition_is_strict_about_result_counts():
    batch = Partition([1, 2, 3])
    with pytest.raises(ResultCountError):
        batch.fill([1, 2])
    # through run, a short answer fails every item instead of crashing the caller
    answers = Partition([1, 2, 3]).run(lambda valid: valid[:2], context="model 'm'")
    assert all(isinstance(a, RuntimeError) and "model 'm': ResultCountError: 2 results for 3 items" in str(a) for a in answers)


def test_a_failing_run_answers_each_valid_item_and_keeps_refusals():
    def broken(valid):
        raise KeyError("boom")

    answers = answer_each([1, -2, 3], positive, broken, context="model 'm'")
    assert str(answers[1]) == "item -2 is negative"
    assert isinstance(answers[0], RuntimeError) and "model 'm': KeyError: 'boom'" in str(answers[0])
    # a RequestError from the run stays what it is
    answers = answer_each([1, 2], None, lambda valid: (_ for _ in ()).throw(RequestError("bad batch")))
    assert [str(a) for a in answers] == ["bad batch", "bad batch"]


def test_per_item_failures_are_their_own():
    run = per_item(lambda x: 10 // x, context="div")
    out = run([5, 0, 2])
    assert out[0] == 2 and out[2] == 5
    assert isinstance(out[1], RuntimeError) and "div: ZeroDivisionError" in str(out[1])


def test_per_item_async_runs_items_together():
    started = []

    async def slow(x):
        started.append(x)
        await asyncio.sleep(0.05)
        if x == 2:
            raise RequestError("two is refused")
        return x * 2

    out = asyncio.run(per_item_async(slow)([1, 2, 3]))
    assert out[0] == 2 and out[2] == 6 and str(out[1]) == "two is refused"
    assert started == [1, 2, 3]


# ---------------------------------------------------------------- python_model_class


CONFIG = {
    "name": "probe",
    "max_batch_size": 4,
    "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": ["-1"]}, {"name": "tag", "data_type": "TYPE_STRING", "dims": ["1"], "optional": True}],
    "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": ["-1"]}, {"name": "n", "data_type": "TYPE_INT32", "dims": ["1"]}],
    "parameters": {"scale": {"string_value": "3"}},
}


def args(config=CONFIG) -> dict:
    return {"model_config": json.dumps(config), "model_repository": "/nowhere/probe", "model_version": "1", "model_instance_kind": "CPU"}


def request(**tensors) -> pb.InferenceRequest:
    return pb.InferenceRequest("probe", [pb.Tensor(k, v) for k, v in tensors.items()])


def make_scale(context):
    scale = float(context.parameter("scale"))
    calls = []

    def process(requests):
        calls.append(len(requests))
        return [{"y": t["x"] * scale, "n": np.full((len(t["x"]), 1), len(requests), np.int32)} for t in requests]

    process.calls = calls
    return process


def test_one_execute_validates_each_request_and_batches_the_valid_ones():
    model = python_model_class(pb, make_scale)()
    model.initialize(args())
    responses = model.execute(
        [
            request(x=np.ones((2, 3), np.float32)),
            request(x=np.ones((1, 3), np.int32)),  # wrong dtype
            request(y=np.ones((1, 3), np.float32)),  # missing input
            request(x=np.ones((5, 3), np.float32)),  # over max_batch_size
            request(x=np.full((1, 2), 2, np.float32), tag=np.array([[b"t"]], dtype=object)),
        ]
    )
    assert len(responses) == 5
    assert error_of(responses[1]) == "input 'x': expected data type FP32, got INT32"
    assert error_of(responses[2]) == "missing input tensor 'x'"
    assert error_of(responses[3]) == "batch size 5 exceeds max_batch_size 4"
    np.testing.assert_array_equal(outputs_of(responses[0])["y"], np.full((2, 3), 3.0))
    np.testing.assert_array_equal(outputs_of(responses[4])["y"], np.full((1, 2), 6.0))
    assert outputs_of(responses[0])["n"][0, 0] == 2  # the two valid requests went in one call
    assert model.batch_model.process.calls == [2]


def test_a_process_returning_too_few_answers_fails_its_requests_not_the_stub():
    def make_short(context):
        return lambda requests: [{"y": requests[0]["x"]}]

    model = python_model_class(pb, make_short)()
    model.initialize(args())
    responses = model.execute([request(x=np.ones((1, 2), np.float32)), request(x=np.ones((1, 2), np.float32))])
    assert all("model 'probe': ResultCountError: 1 results for 2 items" in error_of(r) for r in responses)


def test_an_exception_answers_every_request_with_what_broke():
    def make_broken(context):
        def process(requests):
            raise MemoryError("out of memory in a native library")

        return process

    model = python_model_class(pb, make_broken)()
    model.initialize(args())
    (response,) = model.execute([request(x=np.ones((1, 2), np.float32))])
    assert error_of(response) == "model 'probe': MemoryError: out of memory in a native library"


def test_requested_outputs_reach_the_process():
    seen = []

    def make_spy(context):
        def process(requests):
            seen.extend((t.wants("y"), t.wants("n")) for t in requests)
            return [{"y": t["x"]} for t in requests]

        return process

    model = python_model_class(pb, make_spy)()
    model.initialize(args())
    only_y = pb.InferenceRequest("probe", [pb.Tensor("x", np.ones((1, 1), np.float32))], ["y"])
    model.execute([only_y, request(x=np.ones((1, 1), np.float32))])
    assert seen == [(True, False), (True, True)]


def test_an_async_process_makes_execute_a_coroutine():
    def make_async(context):
        async def process(requests):
            await asyncio.sleep(0)
            return [{"y": t["x"] + 1} for t in requests]

        return process

    model = python_model_class(pb, make_async)()
    model.initialize(args())
    returned = model.execute([request(x=np.zeros((1, 2), np.float32)), request(x=np.ones((1, 2), np.int64))])
    assert asyncio.iscoroutine(returned)  # what the stub checks before running it
    responses = asyncio.run(returned)
    np.testing.assert_array_equal(outputs_of(responses[0])["y"], np.ones((1, 2)))
    assert "expected data type FP32" in error_of(responses[1])


# ---------------------------------------------------------------- BLS


def test_bls_checks_every_response(inprocess):
    bls = Bls(pb)
    onnx_inputs = {c.input: np.ones((1, 2), c.dtype) for c in CASES}
    got = bls.infer("datatypes_onnx", onnx_inputs, ["y_fp32"])
    np.testing.assert_array_equal(got["y_fp32"], reference_outputs(onnx_inputs)["y_fp32"])
    with pytest.raises(ModelCallError, match="datatypes_onnx: input 'x_fp32': expected data type FP32"):
        bls.infer("datatypes_onnx", {**onnx_inputs, "x_fp32": np.ones((1, 2), np.float64)}, ["y_fp32"])
    with pytest.raises(ModelCallError, match="no output 'nothing'"):
        asyncio.run(bls.infer_async("datatypes_onnx", onnx_inputs, ["nothing"]))
    run = bls.network("datatypes_onnx", "x_fp32", "y_fp32")
    with pytest.raises(ModelCallError, match="missing input tensor"):
        asyncio.run(run(np.ones((1, 2), np.float32)))


# ---------------------------------------------------------------- the onnxruntime backend


def feeds(batch: int, length: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {c.input: rng.integers(0, 2 if c.dtype == "bool" else 60, (batch, length)).astype(c.dtype) for c in CASES}


def test_requests_with_different_shapes_in_one_execute(inprocess):
    sent = [feeds(2, 3, 1), feeds(1, 5, 2), feeds(3, 3, 3), feeds(1, 5, 4)]
    for tensors, response in zip(sent, inprocess.infer_batch("datatypes_onnx", sent)):
        for name, want in reference_outputs(tensors).items():
            got = outputs_of(response)[name]
            assert got.dtype == want.dtype and np.array_equal(got, want), name


def test_one_bad_request_does_not_spoil_the_batch(inprocess):
    bad = {**feeds(1, 3, 5), "x_uint8": feeds(1, 3, 5)["x_uint8"].astype(np.float32)}
    missing = {k: v for k, v in feeds(1, 3, 6).items() if k != "x_bool"}
    good = feeds(2, 3, 7)
    responses = inprocess.infer_batch("datatypes_onnx", [bad, good, missing, feeds(17, 2, 8)])
    assert "x_uint8" in error_of(responses[0]) and "UINT8" in error_of(responses[0])
    assert "missing input tensor 'x_bool'" in error_of(responses[2])
    assert "exceeds max_batch_size 16" in error_of(responses[3])
    np.testing.assert_array_equal(outputs_of(responses[1])["y_fp32"], reference_outputs(good)["y_fp32"])


def test_thread_parameters_are_applied(inprocess):
    network = inprocess.instance("text_encoder").batch_model.process
    options = network.engine.session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    assert network.engine.providers == ["CPUExecutionProvider"]


def test_provider_choice():
    gpu = {"optimization": {"execution_accelerators": {"gpu_execution_accelerator": [{"name": "tensorrt"}]}}}
    available = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers({}, "KIND_CPU", 0, available) == ["CPUExecutionProvider"]
    assert choose_providers(gpu, "KIND_GPU", 1, available) == [
        ("TensorrtExecutionProvider", {"device_id": 1}),
        ("CUDAExecutionProvider", {"device_id": 1}),
        "CPUExecutionProvider",
    ]
    assert choose_providers({}, "GPU", 0, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
