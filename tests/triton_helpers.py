"""Helpers the integration tests share: request building (clients.common)
and firing many requests at once over gRPC."""

from __future__ import annotations

import queue
import time

import pytest

from clients.common import make_inputs, make_outputs  # noqa: F401  (re-exported for the tests)
from export.common.formats import tensorrt_missing

without_tensorrt = pytest.mark.skipif(
    tensorrt_missing() is None, reason="TensorRT and an NVIDIA GPU are here: the ONNX fallback this test expects is not taken"
)
"""For the tests that expect the exports' TensorRT attempt to fall back to ONNX."""


def grpc_fire_all(client, model: str, requests: list, timeout: float = 120.0) -> list[tuple]:
    """Send every request at once (gRPC async) and return, in request order,
    (result, error, seconds until the answer) per request."""
    done = queue.Queue()
    started = time.monotonic()
    for index, inputs in enumerate(requests):

        def callback(result, error, index=index):
            done.put((index, result, error, time.monotonic() - started))

        client.async_infer(model, inputs, callback)
    answers = [None] * len(requests)
    for _ in requests:
        index, result, error, seconds = done.get(timeout=timeout)
        answers[index] = (result, error, seconds)
    return answers
