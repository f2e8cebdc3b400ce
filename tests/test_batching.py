"""The batch-function pieces of pipelines/serving/batching.py, on plain
arrays: which requests share a call, what each call is handed, what each
request gets back, and that a failure stays with the requests it concerns.
Then one model put together from them, through python_model_class."""

from __future__ import annotations

import asyncio
import json

import fake_pb_utils as pb
import numpy as np
import pytest
from inprocess import error_of, install_fake_pb_utils, outputs_of

from pipelines.serving.batching import alone_on_failure, grouped_by_shape, items_together, prepared, stacked
from pipelines.serving.partition import InternalError, per_item
from pipelines.serving.python_model import RequestTensors, python_model_class
from pipelines.serving.tensors import RequestError

install_fake_pb_utils()


def request(requested=(), **arrays) -> RequestTensors:
    tensors = RequestTensors(arrays)
    tensors.requested = frozenset(requested)
    return tensors


def rows(batch: int, width: int, start: float = 0) -> np.ndarray:
    return (start + np.arange(batch * width, dtype=np.float32)).reshape(batch, width)


class Recorder:
    """A batch function of stacked inputs that keeps what it was handed."""

    def __init__(self):
        self.calls: list[tuple[list, frozenset]] = []

    def __call__(self, batch: RequestTensors) -> dict[str, np.ndarray]:
        self.calls.append((sorted((name, array.shape) for name, array in batch.items()), batch.requested))
        return {"double": batch["x"] * 2, "total": batch["x"].sum(axis=1, keepdims=True)}


def test_same_shaped_requests_share_one_call_and_get_their_own_rows():
    recorder = Recorder()
    process = grouped_by_shape(stacked(recorder))
    sent = [request(x=rows(2, 3)), request(x=rows(1, 5)), request(x=rows(3, 3, start=100)), request(x=rows(1, 5, start=7))]
    answers = process(sent)
    assert recorder.calls == [([("x", (5, 3))], frozenset()), ([("x", (2, 5))], frozenset())]
    for tensors, answer in zip(sent, answers):
        np.testing.assert_array_equal(answer["double"], tensors["x"] * 2)
        np.testing.assert_array_equal(answer["total"], tensors["x"].sum(axis=1, keepdims=True))


def test_a_stacked_call_computes_what_any_request_asked_and_each_gets_its_own():
    recorder = Recorder()
    answers = stacked(recorder)([request(["double"], x=rows(1, 2)), request(["total"], x=rows(1, 2))])
    assert recorder.calls[0][1] == {"double", "total"}
    assert [set(answer) for answer in answers] == [{"double"}, {"total"}]
    # one request that names no output wants them all
    recorder = Recorder()
    stacked(recorder)([request(["double"], x=rows(1, 2)), request(x=rows(1, 2))])
    assert recorder.calls[0][1] == frozenset()


def test_an_optional_input_not_sent_is_its_own_group():
    recorder = Recorder()
    answers = grouped_by_shape(stacked(recorder))([request(x=rows(1, 2), tag=rows(1, 1)), request(x=rows(1, 2), tag=None), request(x=rows(2, 2))])
    assert recorder.calls == [([("tag", (1, 1)), ("x", (1, 2))], frozenset()), ([("x", (3, 2))], frozenset())]
    assert all(isinstance(answer, dict) for answer in answers)


def test_a_failing_group_fails_alone():
    def refuse_wide(batch):
        if batch["x"].shape[1] > 3:
            raise KeyError("too wide")
        return {"y": batch["x"]}

    answers = grouped_by_shape(stacked(refuse_wide))([request(x=rows(1, 2)), request(x=rows(1, 5)), request(x=rows(2, 5)), request(x=rows(1, 2))])
    assert isinstance(answers[1], KeyError) and answers[2] is answers[1]  # kept as raised: the model reports it
    np.testing.assert_array_equal(answers[3]["y"], rows(1, 2))


def test_items_of_every_request_run_together_and_split_back():
    calls = []

    def normalize(items):
        calls.append(len(items))
        return {"y": np.stack(items) / 10}

    answers = items_together(normalize)([[np.ones(2)], [np.full(2, 2.0), np.full(2, 3.0)], [np.full(2, 4.0)]])
    assert calls == [4]
    assert [answer["y"][:, 0].tolist() for answer in answers] == [[0.1], [0.2, 0.3], [0.4]]


def test_prepared_refuses_alone_and_hands_on_the_rest():
    def positive(tensors):
        if tensors["x"].min() < 0:
            raise RequestError("negative")
        return float(tensors["x"].sum())

    answers = prepared(positive, lambda sums: [{"sum": np.array([s])} for s in sums])([request(x=rows(1, 2)), request(x=-rows(1, 2) - 1), request(x=rows(1, 3))])
    assert [a if isinstance(a, Exception) else float(a["sum"][0]) for a in answers][0::2] == [1.0, 3.0]
    assert str(answers[1]) == "negative"

    async def run_async(sums):
        await asyncio.sleep(0)
        return sums

    process = prepared(positive, run_async)
    assert asyncio.iscoroutinefunction(process)
    assert asyncio.run(process([request(x=rows(1, 2))])) == [1.0]


def test_alone_on_failure_finds_the_request_that_broke_the_batch():
    calls = []

    def forward(items):
        calls.append(len(items))
        if any(item < 0 for item in items):
            raise ValueError("negative picture")
        return {"y": np.array(items)}

    answers = alone_on_failure(items_together(forward))([[1], [-1, 2], [3]])
    assert calls == [4, 1, 2, 1]
    assert [a["y"].tolist() for a in answers[0::2]] == [[1], [3]]
    assert isinstance(answers[1], ValueError)


# ---------------------------------------------------------------- through python_model_class

CONFIG = {
    "name": "pieces",
    "max_batch_size": 8,
    "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": ["-1"]}],
    "output": [{"name": "double", "data_type": "TYPE_FP32", "dims": ["-1"]}, {"name": "total", "data_type": "TYPE_FP32", "dims": ["1"]}],
}
ARGS = {"model_config": json.dumps(CONFIG), "model_repository": "/nowhere/pieces", "model_version": "1", "model_instance_kind": "CPU"}


def make_pieces(context):
    def doubled(batch):
        if (batch["x"] == 13).any():
            raise ArithmeticError("unlucky batch")
        return {"double": batch["x"] * 2, "total": batch["x"].sum(axis=1, keepdims=True)}

    return grouped_by_shape(stacked(doubled))


@pytest.fixture(scope="module")
def pieces():
    model = python_model_class(pb, make_pieces)()
    model.initialize(ARGS)
    return model


def infer(model, *arrays):
    return model.execute([pb.InferenceRequest("pieces", [pb.Tensor("x", array)]) for array in arrays])


def test_a_model_of_pieces_answers_each_request(pieces):
    responses = infer(pieces, rows(2, 3), rows(1, 4), np.ones((1, 3), np.int32), np.full((1, 4), 13, np.float32))
    np.testing.assert_array_equal(outputs_of(responses[0])["double"], rows(2, 3) * 2)
    assert "expected data type FP32" in error_of(responses[2])  # validated on its own
    # the failing group is reported with the model's name and what broke; the other group is served
    assert error_of(responses[1]) == error_of(responses[3]) == "model 'pieces': ArithmeticError: unlucky batch"


def test_an_error_reported_by_an_inner_level_is_not_reported_twice():
    def make_reporting(context):
        return per_item(lambda tensors: 1 / 0, context=f"model '{context.name}'")

    model = python_model_class(pb, make_reporting)()
    model.initialize(ARGS)
    (response,) = infer(model, rows(1, 2))
    assert error_of(response) == "model 'pieces': ZeroDivisionError: division by zero"
    assert isinstance(per_item(lambda x: 1 / 0, context="here")([1])[0], InternalError)
