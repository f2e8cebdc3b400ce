"""An in-process stand-in for `triton_python_backend_utils`, the module the
python backend's stub gives a model.py: tensors, requests, responses,
errors, response senders, and BLS calls answered by `SERVER` (an
InProcessServer, tests/inprocess.py), so model.py files and the
Python-based backends run in plain pytest. Only what this repository's code
uses is here, with the stub's names and signatures."""

from __future__ import annotations

import numpy as np

TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
SERVER = None  # set by InProcessServer: who answers BLS calls


class TritonModelException(Exception):
    pass


class TritonError:
    def __init__(self, message: str, code: int = 0):
        self._message = message

    def message(self) -> str:
        return self._message

    def __repr__(self) -> str:
        return f"TritonError({self._message!r})"


class Tensor:
    def __init__(self, name: str, array: np.ndarray):
        if not isinstance(array, np.ndarray):
            raise TritonModelException(f"Tensor '{name}': expected a numpy array, got {type(array).__name__}")
        self._name = name
        self._array = array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class ResponseSender:
    """What a decoupled model sends through; the responses are kept in order."""

    def __init__(self):
        self.responses: list[tuple["InferenceResponse | None", int]] = []
        self.closed = False

    def send(self, response=None, flags: int = 0) -> None:
        if self.closed:
            raise TritonModelException("Unable to send response. Response sender has been closed.")
        self.responses.append((response, flags))
        if flags & TRITONSERVER_RESPONSE_COMPLETE_FINAL:
            self.closed = True


class InferenceRequest:
    """An incoming request (built by the in-process server) or a BLS request
    (built by a model: model_name, inputs, requested_output_names)."""

    def __init__(self, model_name: str = "", inputs=(), requested_output_names=(), timeout: int = 0, **_):
        self.model_name = model_name
        self._inputs = list(inputs)
        self._requested = list(requested_output_names)
        self.timeout = timeout
        self._sender = ResponseSender()
        self.cancelled = False

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def requested_output_names(self) -> list[str]:
        return list(self._requested)

    def get_response_sender(self) -> ResponseSender:
        return self._sender

    def is_cancelled(self) -> bool:
        return self.cancelled

    def exec(self) -> "InferenceResponse":
        return SERVER.call(self)

    async def async_exec(self) -> "InferenceResponse":
        return await SERVER.call_async(self)


class InferenceResponse:
    def __init__(self, output_tensors=(), error: TritonError | None = None):
        self._outputs = list(output_tensors)
        self._error = error

    def output_tensors(self) -> list[Tensor]:
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    return next((t for t in request.inputs() if t.name() == name), None)


def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
    return next((t for t in response.output_tensors() if t.name() == name), None)


def using_decoupled_model_transaction_policy(model_config: dict) -> bool:
    return bool(model_config.get("model_transaction_policy", {}).get("decoupled", False))
