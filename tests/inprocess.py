"""The model repository served in this process, without tritonserver: each
model's model.py (or the Python-based backend its config names) loaded with
the stand-in `triton_python_backend_utils` (fake_pb_utils), initialised with
the `args` the stub would give, and executed on requests built here. BLS
calls go to the models of the same repository; ensembles run their steps in
order, with Triton's rule for tensors passed between batching and
non-batching models (a batch axis of 1 added or dropped).

What this does not do is what tritonserver does: scheduling, dynamic
batching across clients, shape checks at the front door. The integration
tests cover those against the real server; this covers the serving glue and
every model's code in plain pytest."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

import fake_pb_utils as pb
from lint import pbtxt
from runtime.paths import BACKENDS_DIR


def install_fake_pb_utils():
    """Make `import triton_python_backend_utils` give the stand-in."""
    sys.modules["triton_python_backend_utils"] = pb
    return pb


class InProcessServer:
    def __init__(self, repositories: Sequence[Path]):
        install_fake_pb_utils()
        self.folders = {
            folder.name: folder for repository in repositories for folder in sorted(Path(repository).iterdir()) if (folder / "config.pbtxt").exists()
        }
        self.configs: dict[str, dict] = {}
        self.instances: dict[str, object] = {}
        self.executions: dict[str, list[int]] = {}  # model -> requests per execute, in order
        pb.SERVER = self

    # ---------------------------------------------------------------- models

    def config(self, name: str) -> dict:
        if name not in self.configs:
            if name not in self.folders:
                raise KeyError(f"model '{name}' is not in the repository")
            self.configs[name] = pbtxt.as_json(pbtxt.parse((self.folders[name] / "config.pbtxt").read_text()))
        return self.configs[name]

    def model_file(self, name: str) -> Path:
        backend = self.config(name).get("backend", "")
        if backend == "python":
            return self.folders[name] / "1" / "model.py"
        return BACKENDS_DIR / backend / "model.py"

    def instance(self, name: str):
        """The model's TritonPythonModel, initialised once (as one instance)."""
        if name not in self.instances:
            path = self.model_file(name)
            spec = importlib.util.spec_from_file_location(f"inprocess_{name}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            model = module.TritonPythonModel()
            model.initialize(
                {
                    "model_config": json.dumps(self.config(name)),
                    "model_instance_kind": "CPU",
                    "model_instance_name": f"{name}_0",
                    "model_instance_device_id": "0",
                    "model_repository": str(self.folders[name]),
                    "model_version": "1",
                    "model_name": name,
                }
            )
            self.instances[name] = model
        return self.instances[name]

    def is_ensemble(self, name: str) -> bool:
        return self.config(name).get("platform") == "ensemble"

    def is_batching(self, name: str) -> bool:
        return int(self.config(name).get("max_batch_size", 0)) > 0

    # ---------------------------------------------------------------- requests

    @staticmethod
    def request(name: str, inputs: dict[str, np.ndarray], outputs: Sequence[str] = ()) -> pb.InferenceRequest:
        return pb.InferenceRequest(name, [pb.Tensor(k, v) for k, v in inputs.items()], list(outputs))

    async def execute_async(self, name: str, requests: list[pb.InferenceRequest]) -> list[pb.InferenceResponse]:
        """One execute of `name` over `requests` (what the dynamic batcher would hand it)."""
        if self.is_ensemble(name):
            return [await self._ensemble(name, request) for request in requests]
        self.executions.setdefault(name, []).append(len(requests))
        returned = self.instance(name).execute(requests)
        if inspect.isawaitable(returned):
            returned = await returned
        if returned is None:  # decoupled: the responses went through the senders
            return [None] * len(requests)
        if len(returned) != len(requests):
            raise AssertionError(f"{name}: {len(returned)} responses for {len(requests)} requests")
        return returned

    def execute(self, name: str, requests: list[pb.InferenceRequest]) -> list[pb.InferenceResponse]:
        return asyncio.run(self.execute_async(name, requests))

    def infer(self, name: str, inputs: dict[str, np.ndarray], outputs: Sequence[str] = ()) -> pb.InferenceResponse:
        return self.execute(name, [self.request(name, inputs, outputs)])[0]

    def infer_batch(self, name: str, many: Sequence[dict[str, np.ndarray]]) -> list[pb.InferenceResponse]:
        """Several requests in one execute."""
        return self.execute(name, [self.request(name, inputs) for inputs in many])

    def call(self, request: pb.InferenceRequest) -> pb.InferenceResponse:
        """A blocking BLS call from a model."""
        return asyncio.run(self.call_async(request)) if not _in_loop() else _run_in_thread(self.call_async(request))

    async def call_async(self, request: pb.InferenceRequest) -> pb.InferenceResponse:
        """An async BLS call from a model: only the outputs it asked for come back."""
        response = (await self.execute_async(request.model_name, [request]))[0]
        wanted = request.requested_output_names()
        if response.has_error() or not wanted:
            return response
        return pb.InferenceResponse([t for t in response.output_tensors() if t.name() in wanted])

    # ---------------------------------------------------------------- ensembles

    async def _ensemble(self, name: str, request: pb.InferenceRequest) -> pb.InferenceResponse:
        config = self.config(name)
        batched = self.is_batching(name)
        tensors = {t.name(): (t.as_numpy(), batched) for t in request.inputs()}
        for step in config["ensemble_scheduling"]["step"]:
            model = step["model_name"]
            inputs = {key: self._reshape(model, key, *tensors[value]) for key, value in step["input_map"].items()}
            sub = self.request(model, inputs, list(step["output_map"]))
            response = (await self.execute_async(model, [sub]))[0]
            if response.has_error():
                return response
            produced = {t.name(): t.as_numpy() for t in response.output_tensors()}
            for key, value in step["output_map"].items():
                tensors[value] = (produced[key], self.is_batching(model))
        wanted = request.requested_output_names() or [o["name"] for o in config["output"]]
        return pb.InferenceResponse([pb.Tensor(out, tensors[out][0]) for out in wanted])

    def _reshape(self, model: str, input_name: str, array: np.ndarray, batched: bool) -> np.ndarray:
        """Triton's ensemble rule between batching and non-batching models."""
        wants_batch = self.is_batching(model)
        if wants_batch == batched:
            return array
        dims = next(i for i in self.config(model)["input"] if i["name"] == input_name).get("dims", [])
        if wants_batch and len(dims) == array.ndim:
            return array[None]
        if not wants_batch and len(dims) != array.ndim and array.shape[0] == 1:
            return array[0]
        return array


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


def _run_in_thread(coroutine):
    """A blocking call made from inside a running loop (the stub runs BLS exec() on its own thread)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def outputs_of(response: pb.InferenceResponse) -> dict[str, np.ndarray]:
    if response.has_error():
        raise AssertionError(f"unexpected error: {response.error().message()}")
    return {t.name(): t.as_numpy() for t in response.output_tensors()}


def error_of(response: pb.InferenceResponse) -> str:
    assert response.has_error(), f"expected an error, got outputs {[t.name() for t in response.output_tensors()]}"
    return response.error().message()
