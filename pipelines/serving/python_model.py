"""Glue shared by every Python-backend model.py in this repository.

`triton_python_backend_utils` only exists inside the stub, so model.py passes
the module in; everything here stays importable (and testable) outside."""

from __future__ import annotations

import json
from typing import Callable, Sequence

import numpy as np

from pipelines.serving.tensors import RequestError, TensorSpec, specs_from_config, validate_request


def load_config(args: dict) -> dict:
    return json.loads(args["model_config"])


class RequestTensors(dict):
    """The input arrays of one request by name, plus `requested`: the output
    names the caller asked for (empty: all of them). An ensemble step asks
    only for the outputs its output_map uses, so a model with alternative
    outputs computes just those."""

    requested: frozenset = frozenset()


def wants(tensors: dict, output: str) -> bool:
    """Whether the request behind `tensors` asked for `output` (yes when it
    named none, or for a plain dict)."""
    requested = getattr(tensors, "requested", frozenset())
    return not requested or output in requested


def read_requests(pb_utils, requests, names: Sequence[str]) -> list[RequestTensors]:
    tensors = []
    for request in requests:
        per_request = RequestTensors()
        for name in names:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            per_request[name] = None if tensor is None else tensor.as_numpy()
        per_request.requested = frozenset(request.requested_output_names())
        tensors.append(per_request)
    return tensors


def to_response(pb_utils, answer: dict[str, np.ndarray] | Exception):
    if isinstance(answer, Exception):
        return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(answer)))
    return pb_utils.InferenceResponse(
        output_tensors=[pb_utils.Tensor(name, np.ascontiguousarray(array)) for name, array in answer.items()]
    )


class BatchModel:
    """A Python model whose work is one call over all valid requests of an
    execute: `process(list of input dicts) -> list of output dicts`.

    Each request is validated against the config first; an invalid request
    gets its own error and the others are processed together. An exception
    from `process` is reported on every request of that batch, so the stub
    stays alive and later requests are served."""

    def __init__(self, args: dict, process: Callable[[list[dict[str, np.ndarray]]], list]):
        self.config = load_config(args)
        self.name = self.config.get("name", "")
        self.max_batch_size = int(self.config.get("max_batch_size", 0))
        self.inputs: list[TensorSpec] = specs_from_config(self.config, "input")
        self.process = process

    def execute(self, pb_utils, requests) -> list:
        tensors = read_requests(pb_utils, requests, [spec.name for spec in self.inputs])
        answers: list = [None] * len(requests)
        valid = []
        for index, request_tensors in enumerate(tensors):
            try:
                validate_request(request_tensors, self.inputs, self.max_batch_size)
                valid.append(index)
            except RequestError as error:
                answers[index] = error
        if valid:
            try:
                results = self.process([tensors[i] for i in valid])
            except RequestError as error:
                results = [error] * len(valid)
            except Exception as error:  # keep the stub alive; say what broke
                results = [RuntimeError(f"model '{self.name}': {type(error).__name__}: {error}")] * len(valid)
            for index, result in zip(valid, results):
                answers[index] = result
        return [to_response(pb_utils, answer) for answer in answers]


def python_model_class(pb_utils, make_process: Callable[[dict, dict], Callable]):
    """Build the TritonPythonModel class of a model.py.

    `make_process(config, args)` runs once per instance (load files, build
    tables) and returns the batch function used by BatchModel."""

    class TritonPythonModel:
        def initialize(self, args):
            config = load_config(args)
            self.batch_model = BatchModel(args, make_process(config, args))

        def execute(self, requests):
            return self.batch_model.execute(pb_utils, requests)

    return TritonPythonModel
