"""What the lifecycle tests share: a small model repository made from the
project's models, the launcher behind `make serve` run as a process of its
own, and steady traffic recorded request by request."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from clients.common import make_inputs, picture_request
from runtime.paths import MODEL_REPOSITORY, TEST_REPOSITORY
from runtime import procfs
from runtime.server import free_port
from runtime.triton_api import admin_request
from runtime.watchdog import server_stubs
from testsets.images import document_samples

ORIENTATION = ["orientation", "image_decode", "orientation_preprocess", "orientation_classifier"]
DATATYPES = ["datatypes", "datatypes_model1", "datatypes_model2"]
OCR = ["ocr", "ocr_bls"]  # and the models they call (small_repository finds them)
SD_STREAM = ["stable_diffusion_stream", "sd_text_encoder", "sd_unet", "sd_vae_decoder"]  # its BLS calls are in its code
STUCK_MODEL = """import time

import triton_python_backend_utils as pb_utils

from pipelines.serving.python_model import python_model_class


def make_sleeper(context):
    def process(requests):
        for tensors in requests:
            time.sleep(float(tensors["x"].ravel()[0]) if tensors["x"].size else 0.0)  # 1000: a hang
        return [{"y": tensors["x"]} for tensors in requests]

    return process


TritonPythonModel = python_model_class(pb_utils, make_sleeper)
"""


def probe_copy(repo: Path, name: str, delay_s: float, queue: int = 64, count: int = 1) -> Path:
    """tests/model_repository/queue_probe (identity x -> y) under another name,
    delay, queue bound and instance count."""
    folder = repo / name
    shutil.copytree(TEST_REPOSITORY / "queue_probe", folder)
    text = (folder / "config.pbtxt").read_text()
    text = text.replace('name: "queue_probe"', f'name: "{name}"').replace('string_value: "0.3"', f'string_value: "{delay_s}"')
    text = text.replace("max_queue_size: 3", f"max_queue_size: {queue}").replace("count: 1 kind", f"count: {count} kind")
    (folder / "config.pbtxt").write_text(text)
    return folder


def small_repository(repo: Path, models: list[str] = ()) -> Path:
    """`identity` (instant), `slow` (1 s per execute), `bls_probe` calling
    identity, plus the named models of model_repository/."""
    repo.mkdir(parents=True, exist_ok=True)
    probe_copy(repo, "identity", 0.0)
    probe_copy(repo, "slow", 1.0)
    shutil.copytree(TEST_REPOSITORY / "bls_probe", repo / "bls_probe")
    config = repo / "bls_probe" / "config.pbtxt"
    config.write_text(config.read_text().replace('string_value: "queue_probe"', 'string_value: "identity"'))
    for model in with_callees(models):
        shutil.copytree(MODEL_REPOSITORY / model, repo / model, ignore=shutil.ignore_patterns("configs", "__pycache__"))
    return repo


def with_callees(models) -> list[str]:
    """`models` and, repeatedly, the models of model_repository/ they name
    (ensemble steps, parameters) or that name them in `called_by`."""
    found, todo = set(), list(models)
    while todo:
        model = todo.pop()
        if model in found:
            continue
        found.add(model)
        text = (MODEL_REPOSITORY / model / "config.pbtxt").read_text()
        named = set(re.findall(r'model_name: "(\w+)"', text)) | set(re.findall(r'string_value: "(\w+)"', text))
        todo += [m for m in named if (MODEL_REPOSITORY / m / "config.pbtxt").exists()]
        for config in MODEL_REPOSITORY.glob("*/config.pbtxt"):
            called_by = re.search(r'key: "called_by" value: \{ string_value: "([^"]+)"', config.read_text())
            if called_by and model in called_by.group(1).split(","):
                todo.append(config.parent.name)
    return sorted(found)


def stuck_model(repo: Path, name: str, bound_s: float) -> Path:
    """An identity that first sleeps x[0] seconds, with an execution bound."""
    folder = probe_copy(repo, name, 0.0)
    config = folder / "config.pbtxt"
    config.write_text(config.read_text() + f'parameters {{ key: "execution_bound_s" value: {{ string_value: "{bound_s}" }} }}\n')
    (folder / "1" / "model.py").write_text(STUCK_MODEL)
    return folder


def fault_figures(outcomes: list, faulted: float, recovered: float) -> dict:
    """What a fault at `faulted` cost the traffic: requests in flight at that
    moment, requests lost (failed), and how long recovery took."""
    failed = [o for o in outcomes if o.error]
    answered_after = [o.done for o in outcomes if o.sent >= faulted and not o.error]
    in_flight = sum(o.sent <= faulted < o.done for o in outcomes)
    return {
        "requests": len(outcomes),
        "in_flight_at_fault": in_flight,
        "lost": len(failed),
        "lost_beyond_in_flight": max(0, len(failed) - in_flight),
        "seconds_to_first_answer": round(min(answered_after) - faulted, 2) if answered_after else None,
        "seconds_to_reload": round(recovered - faulted, 2),
    }


class Launcher:
    """`python -m runtime.server` (what `make serve` runs) on free
    ports; its output lines are collected as they come."""

    def __init__(self, repo: Path | None, env: dict | None = None, args: list[str] = (), ports: tuple[int, int, int] | None = None):
        """repo None: the repository is among `args`; ports: (HTTP, gRPC,
        metrics) that `args` name (else free ports given through the environment)."""
        self.http_port, self.grpc_port, self.metrics_port = ports or (free_port(), free_port(), free_port())
        environment = dict(os.environ, HTTP_PORT=str(self.http_port), GRPC_PORT=str(self.grpc_port), METRICS_PORT=str(self.metrics_port))
        environment.update(env or {})
        repository = ["--model-repository", str(repo)] if repo is not None else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "runtime.server", *repository, *args],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def http_url(self) -> str:
        return f"localhost:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"localhost:{self.grpc_port}"

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 240.0, start: int = 0) -> int:
        """Index of the first line from `start` on holding `text`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index in range(start, len(self.lines)):
                if text in self.lines[index]:
                    return index
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no line with {text!r} in the launcher's output:\n{self.output[-4000:]}")

    def server_pid(self) -> int:
        """The tritonserver child of the launcher."""
        found = procfs.children(self.process.pid, "tritonserver")
        assert found, "the launcher has no tritonserver child"
        return next(iter(found))

    def stub_pid(self, model: str) -> int:
        stubs = [s for s in server_stubs(self.server_pid(), {}) if s.model == model and not s.zombie]
        assert stubs, f"no live stub of {model}"
        return stubs[0].pid

    def admin(self, path: str, key: str | None) -> tuple[int, str]:
        status, body = admin_request(self.http_url, path, key)
        return status, body.decode(errors="replace")

    def stop(self, sig=None, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig or 2)
        try:
            return self.process.wait(timeout)
        finally:
            self._reader.join(timeout=5)


@dataclass
class Outcome:
    sent: float
    done: float
    error: str | None
    version: str | None = None


def identity_request(i: int) -> tuple[dict, np.ndarray]:
    x = np.full((1, 3), i, dtype=np.float32)
    return {"x": x}, x


def datatypes_request(i: int) -> tuple[dict, np.ndarray]:
    x = np.full((1, 4), i % 256, dtype=np.uint8)
    tensors = {
        "ensemble_input_string": np.array([[str(i).encode()]], dtype=np.object_),
        "ensemble_input_UINT8_array": x,
        "ensemble_input_INT8_array": x.astype(np.int8) // 2,
        "ensemble_input_FP32_image": np.full((1, 3, 2, 2), i, dtype=np.float32),
        "ensemble_input_bool": np.array([[i % 2 == 0]]),
    }
    return tensors, x


_PICTURE = document_samples()[0].data


def orientation_request(i: int) -> tuple[dict, np.ndarray]:
    return picture_request(_PICTURE), None


REQUESTS = {"identity": identity_request, "bls_probe": identity_request, "slow": identity_request, "datatypes": datatypes_request, "orientation": orientation_request}
OUTPUTS = {"identity": "y", "bls_probe": "y", "slow": "y", "datatypes": "ensemble_output_UINT8_array", "orientation": "probabilities"}


class Traffic:
    """`workers` clients sending `model` requests one after another (gRPC)
    until stopped; every outcome is kept, in the order answers came. An
    identity answer must equal its input."""

    def __init__(self, url: str, model: str, workers: int = 2, pause: float = 0.0):
        self.url, self.model, self.workers, self.pause = url, model, workers, pause
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, args=(w,), daemon=True) for w in range(workers)]

    def _work(self, worker: int) -> None:
        client = grpcclient.InferenceServerClient(self.url)
        i = worker
        while not self._stop.is_set():
            tensors, expected = REQUESTS[self.model](i)
            sent = time.monotonic()
            try:
                result = client.infer(self.model, make_inputs(grpcclient, tensors), client_timeout=60)
                error = None
                y = result.as_numpy(OUTPUTS[self.model])
                if expected is not None and not np.array_equal(y, expected):
                    error = f"wrong answer {y!r} for {expected!r}"
                version = result.get_response().model_version
            except Exception as failure:  # recorded: the test decides which failures are allowed
                error, version = str(failure), None
            self.outcomes.append(Outcome(sent, time.monotonic(), error, version))
            if error:  # a failing model answers at once: do not spin on it
                time.sleep(0.01)
            i += self.workers
            if self.pause:
                time.sleep(self.pause)
        client.close()

    def __enter__(self) -> "Traffic":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def wait_answers(self, count: int, timeout: float = 60.0) -> None:
        """Until `count` more answers came in."""
        target = len(self.outcomes) + count
        deadline = time.monotonic() + timeout
        while len(self.outcomes) < target:
            assert time.monotonic() < deadline, f"{self.model}: {len(self.outcomes)} answers, waited for {target}"
            time.sleep(0.02)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.error]
