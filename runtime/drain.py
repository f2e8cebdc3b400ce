"""Drain a tritonserver before it stops, so that nothing accepted is cut.

Why: on SIGTERM Triton stops every model's scheduler at once, so an ensemble
or BLS request in flight is refused its next stage ("Server is stopping,
scheduler ... stopped accepting new inference requests"), and after
--exit-timeout-secs anything still running is cut off.

How, before the server is told to stop:
1. Each *entry model* (a model clients call and no other model calls: not an
   ensemble step, not named by another model's parameters, not carrying
   `called_by`; ensembles and Python models only, since the networks' callers
   are not all declared) is replaced, through the admin API, by a stand-in
   with the same inputs and outputs (runtime/stopping_model.py) that answers
   every new request at once with UNAVAILABLE / HTTP 503 and "server is
   stopping: ...". Triton builds the stand-in while the model serves, then
   swaps them; requests the old version had accepted (queued or running, every
   stage of an ensemble, every BLS call, every streamed response) finish on it.
2. The drain waits until nothing is in flight: no request waiting in any
   model's queue (Triton's pending-request gauge) and no stub at work (their
   progress files, pipelines/serving/progress.py), for CONFIRM_S in a row, or
   until the grace period ends.
Then the launcher stops the server, which has nothing left to cut."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

from pipelines.serving.progress import busy_since
from runtime import procfs
from runtime.bounds import is_ensemble, parameter
from runtime.triton_api import TritonApiError, load, model_config, pending_requests, repository_index

STOPPING_MODEL = Path(__file__).with_name("stopping_model.py")
DRAINING_PARAMETER = "server_stopping"
CONFIRM_S = 1.0
SWAP_ATTEMPTS = 3
POLL_S = 0.2


def entry_models(configs: dict[str, dict]) -> list[str]:
    """The models of `configs` (name -> Triton's JSON configuration) that
    clients call and no other model calls, ensembles and Python models only."""
    callees: set[str] = set()
    for name, config in configs.items():
        if is_ensemble(config):
            callees |= {step["model_name"] for step in config["ensemble_scheduling"]["step"]}
        if parameter(config, "called_by"):
            callees.add(name)
        for key, value in (config.get("parameters") or {}).items():
            text = value.get("string_value", "") if isinstance(value, dict) and key != "called_by" else ""
            callees |= {part.strip() for part in text.split(",")} & (configs.keys() - {name})
    return sorted(n for n, c in configs.items() if n not in callees and (is_ensemble(c) or c.get("backend") == "python"))


def stand_in_config(config: dict) -> dict:
    """A Python model with the inputs and outputs of `config` (a changed
    configuration, so Triton builds it anew rather than updating in place)."""
    stand_in = {
        "name": config["name"],
        "backend": "python",
        "max_batch_size": config.get("max_batch_size", 0),
        # the tensors' names, types and shapes only: a label file or a reshape refers to the model's own folder
        "input": [{k: v for k, v in i.items() if k in ("name", "data_type", "dims", "optional")} for i in config.get("input", [])],
        "output": [{k: v for k, v in o.items() if k in ("name", "data_type", "dims")} for o in config.get("output", [])],
        "instance_group": [{"count": 1, "kind": "KIND_CPU"}],
        "parameters": {DRAINING_PARAMETER: {"string_value": "1"}},
    }
    if (config.get("model_transaction_policy") or {}).get("decoupled"):
        stand_in["model_transaction_policy"] = {"decoupled": True}
    return stand_in


def busy_stubs(progress_dir: Path | None) -> list[int]:
    """Pids of live stubs whose progress file says they are at work."""
    if progress_dir is None or not progress_dir.is_dir():
        return []
    found = []
    for path in progress_dir.iterdir():
        if path.name.isdigit() and busy_since(path) and _alive(int(path.name)):
            found.append(int(path.name))
    return found


def _alive(pid: int) -> bool:
    found = procfs.stat(pid)
    return found is not None and found.state != "Z"


class Drain:
    def __init__(self, http_url: str, metrics_url: str, admin_key: str | None, progress_dir: Path | None, log: Callable[[str], None] = print):
        self.http_url = http_url
        self.metrics_url = metrics_url
        self.admin_key = admin_key
        self.progress_dir = progress_dir
        self.log = log
        self.refused_by: list[str] = []  # entry models answering "server is stopping"

    def run(self, grace_s: float) -> bool:
        """Refuse new requests, wait for those in flight; True when none was
        left when the grace period ended."""
        deadline = time.monotonic() + grace_s
        self.log(f"draining: new requests are refused ('server is stopping'); waiting up to {grace_s:.0f} s for those in flight")
        self.refuse_new_requests()
        idle = self.wait_idle(deadline)
        if idle:
            self.log("draining: nothing in flight")
        else:
            self.log(f"draining: grace period of {grace_s:.0f} s over with work in flight: {self.in_flight()}")
        return idle

    def refuse_new_requests(self) -> None:
        try:
            ready = [m["name"] for m in repository_index(self.http_url, self.admin_key) if m.get("state") == "READY"]
            configs = {name: model_config(self.http_url, name, self.admin_key) for name in ready}
        except TritonApiError as error:
            self.log(f"draining: cannot read the models ({error}); stopping without refusing first")
            return
        code = STOPPING_MODEL.read_bytes()
        errors: dict[str, str] = {}

        def swap(name: str) -> None:
            for attempt in range(1, SWAP_ATTEMPTS + 1):
                error = load(self.http_url, name, self.admin_key, config=stand_in_config(configs[name]), files={"1/model.py": code})
                if error is None:
                    self.refused_by.append(name)
                    return
                if "out-dated" not in error or attempt == SWAP_ATTEMPTS:
                    errors[name] = error
                    return
                # Triton 2.51 took another load of this model (a dependency's) for newer and
                # dropped ours, leaving the model without a version: load the stand-in again
                self.log(f"draining: the stand-in of '{name}' was out-dated by another load; loading it again")

        threads = [threading.Thread(target=swap, args=(name,), daemon=True) for name in entry_models(configs)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for name, error in sorted(errors.items()):
            self.log(f"draining: '{name}' keeps accepting requests (its stand-in failed to load: {error})")

    def in_flight(self) -> dict[str, int]:
        """Model -> requests queued, and 'stubs at work' -> busy stubs."""
        try:
            found = {model: count for model, count in pending_requests(self.metrics_url).items() if count}
        except OSError:
            found = {}
        busy = busy_stubs(self.progress_dir)
        if busy:
            found["stubs at work"] = len(busy)
        return found

    def wait_idle(self, deadline: float) -> bool:
        quiet_since = None
        while time.monotonic() < deadline:
            now = time.monotonic()
            if self.in_flight():
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= CONFIRM_S:
                return True
            time.sleep(POLL_S)
        return False
