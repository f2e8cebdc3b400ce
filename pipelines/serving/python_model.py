"""Glue shared by every Python-backend model.py and Python-based backend.

`triton_python_backend_utils` only exists inside the stub, so model.py passes
the module in; everything here stays importable (and testable) outside.

A model is `python_model_class(pb_utils, make_process)`: `make_process(context)`
runs once per instance and returns `process(requests)`, a function from the
valid requests of an execute (dicts of input arrays) to one answer per
request (a dict of output arrays, or an exception that fails that request
alone). A coroutine function `process` makes the model's execute a coroutine,
so its BLS calls can be in flight together. The whole path of a request:
pipelines/serving/__init__.py."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from pipelines.serving.bls import DEFAULT_TIMEOUT_MICROSECONDS, Bls
from pipelines.serving.partition import Partition, as_request_error
from pipelines.serving.progress import stub_progress
from pipelines.serving.tensors import TensorSpec, specs_from_config, validate_request


@dataclass(frozen=True)
class ModelContext:
    """What a model instance is given: its config (as Triton's JSON), where
    its files are, its instance placement, and its way to call other models."""

    config: dict
    model_dir: Path
    version: str = "1"
    instance_kind: str = "CPU"
    device_id: int = 0
    bls: Bls | None = field(default=None, compare=False)

    @classmethod
    def from_args(cls, args: dict, pb_utils=None) -> "ModelContext":
        """From the `args` of TritonPythonModel.initialize."""
        config = json.loads(args["model_config"])
        timeout = (config.get("parameters", {}).get("bls_timeout_microseconds") or {}).get("string_value")
        return cls(
            config=config,
            model_dir=Path(args["model_repository"]),
            version=str(args["model_version"]),
            instance_kind=args.get("model_instance_kind", "CPU"),
            device_id=int(args.get("model_instance_device_id", 0) or 0),
            bls=Bls(pb_utils, int(timeout or DEFAULT_TIMEOUT_MICROSECONDS)) if pb_utils is not None else None,
        )

    @property
    def name(self) -> str:
        return self.config.get("name", "")

    @property
    def version_dir(self) -> Path:
        return self.model_dir / self.version

    @property
    def max_batch_size(self) -> int:
        return int(self.config.get("max_batch_size", 0))

    def inputs(self) -> list[TensorSpec]:
        return specs_from_config(self.config, "input")

    def outputs(self) -> list[TensorSpec]:
        return specs_from_config(self.config, "output")

    def parameter(self, key: str, default: str | None = None) -> str | None:
        """A `parameters { key: ... value: { string_value: ... } }` entry."""
        value = self.config.get("parameters", {}).get(key)
        if isinstance(value, dict):
            return value.get("string_value", default)
        return default

    def file(self, name: str) -> Path:
        """A file the export put in the version folder; FileNotFoundError naming the fix."""
        path = self.version_dir / name
        if not path.exists():
            raise FileNotFoundError(f"model '{self.name}': {path} not found (run `make export`)")
        return path


class RequestTensors(dict):
    """The input arrays of one request by name (None for an optional input
    not sent), plus `requested`: the output names the caller asked for
    (empty: all of them). An ensemble step asks only for the outputs its
    output_map uses, so a model with alternative outputs computes just those."""

    requested: frozenset = frozenset()

    @staticmethod
    def cancelled() -> bool:
        """Whether the client cancelled the request (set per request by read_requests)."""
        return False

    def wants(self, output: str) -> bool:
        return not self.requested or output in self.requested


def read_requests(pb_utils, requests, names: Sequence[str]) -> list[RequestTensors]:
    tensors = []
    for request in requests:
        per_request = RequestTensors()
        for name in names:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            per_request[name] = None if tensor is None else tensor.as_numpy()
        per_request.requested = frozenset(request.requested_output_names())
        if hasattr(request, "is_cancelled"):
            per_request.cancelled = request.is_cancelled
        tensors.append(per_request)
    return tensors


def to_response(pb_utils, answer: dict[str, np.ndarray] | Exception):
    if isinstance(answer, Exception):
        return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(answer)))
    return pb_utils.InferenceResponse(
        output_tensors=[pb_utils.Tensor(name, np.ascontiguousarray(array)) for name, array in answer.items()]
    )


Process = Callable[[list[RequestTensors]], list]


# python_backend's async_exec runs each BLS call on the event loop's default
# executor, whose size is min(32, cores + 4): 6 threads on 2 cores, fewer
# than an OCR page's 10-15 recogniser groups, which are meant to be in
# flight together.
DEFAULT_BLS_MAX_IN_FLIGHT = 64
_WIDENED: "weakref.WeakSet" = weakref.WeakSet()


def widen_bls_executor(loop: asyncio.AbstractEventLoop, workers: int) -> None:
    """Give `loop` a default executor of `workers` threads (once per loop):
    how many async BLS calls of one stub can wait for their answers at once."""
    if loop not in _WIDENED:
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bls"))
        _WIDENED.add(loop)


class BatchModel:
    """Every request of an execute validated against the config (a wrong
    one is answered with its own error), the valid ones handed to `process`
    together, the answers sent back in request order; an exception that is
    not a RequestError is reported with the model's name and its type."""

    def __init__(self, context: ModelContext, process: Process):
        self.context = context
        self.inputs = context.inputs()
        self.process = process
        self.is_async = inspect.iscoroutinefunction(process)
        self.bls_workers = int(context.parameter("bls_max_in_flight") or DEFAULT_BLS_MAX_IN_FLIGHT)

    def validate(self, tensors: RequestTensors) -> RequestTensors:
        validate_request(tensors, self.inputs, self.context.max_batch_size)
        return tensors

    def partition(self, pb_utils, requests) -> Partition:
        return Partition(read_requests(pb_utils, requests, [spec.name for spec in self.inputs]), self.validate)

    def execute(self, pb_utils, requests):
        """The responses, or for an async `process` a coroutine giving them
        (the stub runs a returned coroutine to completion)."""
        batch = self.partition(pb_utils, requests)
        if self.is_async:
            return self._execute_async(pb_utils, batch)
        with stub_progress().running():  # what the launcher's watchdog times (pipelines/serving/progress.py)
            answers = batch.run(self.process, context=f"model '{self.context.name}'")
        return [to_response(pb_utils, answer) for answer in answers]

    async def _execute_async(self, pb_utils, batch: Partition) -> list:
        widen_bls_executor(asyncio.get_running_loop(), self.bls_workers)
        with stub_progress().running():
            answers = await batch.run_async(self.process, context=f"model '{self.context.name}'")
        return [to_response(pb_utils, answer) for answer in answers]

    def finalize(self) -> None:
        """Nothing to stop: a batch model's work ends with its execute."""


def is_decoupled(config: dict) -> bool:
    return bool(config.get("model_transaction_policy", {}).get("decoupled", False))


class Stream:
    """What a decoupled model's `process` is handed per request: `send`
    an intermediate answer, ask whether the client `cancelled` (or the
    model is being unloaded)."""

    def __init__(self, pb_utils, request, stopping: threading.Event):
        self.pb_utils = pb_utils
        self.request = request
        self.sender = request.get_response_sender()
        self.stopping = stopping

    def send(self, answer: dict[str, np.ndarray]) -> None:
        self.sender.send(to_response(self.pb_utils, answer))

    def cancelled(self) -> bool:
        return self.stopping.is_set() or bool(self.request.is_cancelled())


StreamProcess = Callable[[RequestTensors, Stream], "dict[str, np.ndarray] | None"]


class StreamingModel:
    """A decoupled model: each request validated against the config, then
    run on a thread of its own by `process(tensors, stream)`, so the requests
    of one instance progress side by side; its return value is the last
    response (None: nothing more) and goes out with the FINAL flag, as does
    the error of a failed request. Unloading stops the running requests at
    their next `cancelled()` check and waits for them a bounded time."""

    def __init__(self, context: ModelContext, process: StreamProcess, stop_timeout_s: float = 30.0):
        self.context = context
        self.inputs = context.inputs()
        self.process = process
        self.stopping = threading.Event()
        self.threads: set[threading.Thread] = set()
        self.lock = threading.Lock()
        self.stop_timeout_s = stop_timeout_s

    def execute(self, pb_utils, requests) -> None:
        for request, tensors in zip(requests, read_requests(pb_utils, requests, [spec.name for spec in self.inputs])):
            thread = threading.Thread(target=self._run, args=(pb_utils, request, tensors), daemon=True)
            with self.lock:
                self.threads.add(thread)
            thread.start()
        return None

    def _run(self, pb_utils, request, tensors: RequestTensors) -> None:
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        sender = request.get_response_sender()
        try:
            validate_request(tensors, self.inputs, self.context.max_batch_size)
            with stub_progress().running():
                answer = self.process(tensors, Stream(pb_utils, request, self.stopping))
        except Exception as error:  # noqa: BLE001 - this request's error
            answer = as_request_error(error, f"model '{self.context.name}'")
        try:
            if answer is None:
                sender.send(flags=final)
            else:
                sender.send(to_response(pb_utils, answer), flags=final)
        finally:
            with self.lock:
                self.threads.discard(threading.current_thread())

    def finalize(self) -> None:
        self.stopping.set()
        deadline = time.monotonic() + self.stop_timeout_s
        with self.lock:
            running = list(self.threads)
        for thread in running:
            thread.join(max(0.0, deadline - time.monotonic()))


def python_model_class(pb_utils, make_process: Callable[[ModelContext], Process]):
    """The TritonPythonModel class of a model.py (or a Python-based backend);
    a decoupled config (model_transaction_policy) gets a StreamingModel, and
    `make_process` a StreamProcess factory for it."""

    class TritonPythonModel:
        def initialize(self, args):
            context = ModelContext.from_args(args, pb_utils)
            model_class = StreamingModel if is_decoupled(context.config) else BatchModel
            self.batch_model = model_class(context, make_process(context))

        def execute(self, requests):
            return self.batch_model.execute(pb_utils, requests)

        def finalize(self):
            self.batch_model.finalize()

    TritonPythonModel.__qualname__ = f"TritonPythonModel[{getattr(make_process, '__name__', 'process')}]"
    return TritonPythonModel
