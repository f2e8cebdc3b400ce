"""Helpers the integration tests share: request building (clients.common),
firing many requests at once over gRPC, and waiting for what the server
does in the background."""

from __future__ import annotations

import queue
import time
from typing import Callable, TypeVar

import pytest

from clients.common import make_inputs, make_outputs  # noqa: F401  (re-exported for the tests)
from export.common.formats import tensorrt_missing

without_tensorrt = pytest.mark.skipif(
    tensorrt_missing() is None, reason="TensorRT and an NVIDIA GPU are here: the ONNX fallback this test expects is not taken"
)
"""For the tests that expect the exports' TensorRT attempt to fall back to ONNX."""

T = TypeVar("T")


def wait_until(probe: Callable[[], T], timeout: float = 60.0, describe: Callable[[], str] | str = "timed out", interval: float = 0.2) -> T:
    """Call probe until it returns something true and return that; fail the
    test after timeout seconds with describe (called then, so it can show
    the state that was still wrong)."""
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() >= deadline:
            raise AssertionError(describe() if callable(describe) else describe)
        time.sleep(interval)
    return value


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
