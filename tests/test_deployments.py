"""No code execution through any shipped deployment: `make serve`, the
container (docker/Dockerfile's CMD), Kubernetes (deploy/kubernetes/base) and
KServe (deploy/kubernetes/kserve) all run the launcher, and each is started
here with its own arguments as they ship (repository and ports swapped for a
one-model folder and free ports; the container's tritonserver stood in for by
the wheel's, found through $TRITON_SERVER_ROOT as in the image). Against that
real server: the repository, model-config, shared-memory, trace, logging and
statistics APIs are refused without their key, over HTTP and gRPC, and work
with it; a load carrying a config and a `file:` override (how Triton's load
API would take a model.py) is refused; inference, health and metadata stay
open; the metrics port listens where the deployment says. The shipped
Secret's placeholder key is refused, and the project's gRPC clients do not
retry a refused call."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from deployments import Deployment, flag, shipped, with_flags
from lifecycle import Launcher, probe_copy
from tritonclient.utils import InferenceServerException

from clients.common import GRPC_RETRY_CHANNEL_ARGS, make_inputs
from runtime.distribution import SYSTEM_ROOT_ENV, assemble_backend_dir, find_distribution, server_environment
from runtime.server import TritonServer, free_port
from runtime.triton_api import ADMIN_HEADER, GRPC_ADMIN_HEADER, GRPC_STATS_HEADER, STATS_HEADER

DEPLOYMENTS = {d.name: d for d in shipped()}
TEST_KEYS = {"ADMIN_KEY": "test-admin-key-0123456789abcdef", "STATS_KEY": "test-stats-key-0123456789abcdef"}
MALICIOUS_MODEL = b"import os\nos.system('touch /tmp/pwned-by-load')\n"
OVERRIDE = {"config": json.dumps({"name": "identity", "backend": "python"}), "file:1/model.py": base64.b64encode(MALICIOUS_MODEL).decode()}

# API -> (HTTP method, path, header that unlocks it)
HTTP_APIS = {
    "model-repository": ("POST", "/v2/repository/index", ADMIN_HEADER),
    "model-config": ("GET", "/v2/models/identity/config", ADMIN_HEADER),
    "shared-memory": ("GET", "/v2/systemsharedmemory/status", ADMIN_HEADER),
    "trace": ("GET", "/v2/trace/setting", ADMIN_HEADER),
    "logging": ("GET", "/v2/logging", ADMIN_HEADER),
    "statistics": ("GET", "/v2/models/stats", STATS_HEADER),
}
# API -> (tritonclient.grpc method and arguments, metadata key that unlocks it)
GRPC_APIS = {
    "model-repository": (("get_model_repository_index",), GRPC_ADMIN_HEADER),
    "model-config": (("get_model_config", "identity"), GRPC_ADMIN_HEADER),
    "shared-memory": (("get_system_shared_memory_status",), GRPC_ADMIN_HEADER),
    "trace": (("get_trace_settings",), GRPC_ADMIN_HEADER),
    "logging": (("get_log_settings",), GRPC_ADMIN_HEADER),
    "statistics": (("get_inference_statistics",), GRPC_STATS_HEADER),
}
KEY_OF = {ADMIN_HEADER: "ADMIN_KEY", STATS_HEADER: "STATS_KEY", GRPC_ADMIN_HEADER: "ADMIN_KEY", GRPC_STATS_HEADER: "STATS_KEY"}


def container_root(base: Path) -> dict[str, str]:
    """A stand-in for the image's /opt/tritonserver (bin/tritonserver and
    backends/) made of the wheel's server, with the environment the image
    gives it (libraries on the loader's path, the serving python3 first)."""
    wheel = find_distribution()
    (base / "bin").mkdir(parents=True)
    (base / "bin" / "tritonserver").symlink_to(wheel.server_binary)
    assemble_backend_dir(base / "backends", dist=wheel)
    env = server_environment(wheel, base={})
    return {SYSTEM_ROOT_ENV: str(base), "LD_LIBRARY_PATH": env["LD_LIBRARY_PATH"], "PATH": env["PATH"] + os.pathsep + os.environ["PATH"]}


@pytest.fixture(scope="module", params=sorted(DEPLOYMENTS))
def deployed(request, tmp_path_factory):
    deployment: Deployment = DEPLOYMENTS[request.param]
    base = tmp_path_factory.mktemp(deployment.name.replace(" ", "-"))
    repo = base / "repo"
    repo.mkdir()
    probe_copy(repo, "identity", 0.0)
    ports = free_port(), free_port(), free_port()
    args = with_flags(deployment.args, model_repository=str(repo), http_port=str(ports[0]), grpc_port=str(ports[1]), metrics_port=str(ports[2]))
    env = {**{k: v for k, v in deployment.env.items() if not k.endswith("_FILE")}, **TEST_KEYS}
    env.update({"ADMIN_KEY_FILE": str(base / "admin-key"), "STATS_KEY_FILE": str(base / "stats-key")})
    if SYSTEM_ROOT_ENV in env:
        env.update(container_root(base / "tritonserver"))
    launcher = Launcher(None, env=env, args=args, ports=ports)
    launcher.wait_for("Ctrl-C stops the server", timeout=300)
    launcher.deployment = deployment
    yield launcher
    assert launcher.stop() == 0, launcher.output[-3000:]


def http(launcher, method: str, path: str, headers: dict | None = None, **kwargs) -> requests.Response:
    return requests.request(method, f"http://{launcher.http_url}{path}", headers=headers or {}, timeout=30, **kwargs)


def test_restricted_apis_are_refused_without_their_key_over_http_and_work_with_it(deployed):
    for api, (method, path, header) in HTTP_APIS.items():
        for headers in ({}, {header: "wrong-key-0123456789"}, {ADMIN_HEADER if header == STATS_HEADER else STATS_HEADER: TEST_KEYS[KEY_OF[header]]}):
            refused = http(deployed, method, path, headers)
            assert refused.status_code == 403 and f"expecting header '{header}'" in refused.text, (deployed.deployment.name, api, headers, refused.text)
        allowed = http(deployed, method, path, {header: TEST_KEYS[KEY_OF[header]]})
        assert allowed.status_code == 200, (deployed.deployment.name, api, allowed.text)


def test_restricted_apis_are_refused_without_their_key_over_grpc_and_work_with_it(deployed):
    client = grpcclient.InferenceServerClient(deployed.grpc_url)
    try:
        for api, ((method, *args), header) in GRPC_APIS.items():
            with pytest.raises(InferenceServerException, match=f"expecting header '{header}'") as refused:
                getattr(client, method)(*args)
            assert refused.value.status() == "StatusCode.UNAVAILABLE", (api, refused.value)
            getattr(client, method)(*args, headers={header: TEST_KEYS[KEY_OF[header]]})
    finally:
        client.close()


def test_a_load_with_a_file_override_is_refused_over_http_and_grpc(deployed):
    before = infer_identity(deployed, 7.0)
    refused = http(deployed, "POST", "/v2/repository/models/identity/load", json={"parameters": OVERRIDE})
    assert refused.status_code == 403 and "restricted" in refused.text, refused.text
    client = grpcclient.InferenceServerClient(deployed.grpc_url)
    try:
        with pytest.raises(InferenceServerException, match="restricted"):
            client.load_model("identity", config=OVERRIDE["config"], files={"file:1/model.py": MALICIOUS_MODEL})
    finally:
        client.close()
    assert infer_identity(deployed, 7.0) == before == "1"  # the model was not replaced
    assert not Path("/tmp/pwned-by-load").exists()


def infer_identity(launcher, value: float) -> str:
    client = grpcclient.InferenceServerClient(launcher.grpc_url)
    try:
        x = np.full((1, 3), value, np.float32)
        result = client.infer("identity", make_inputs(grpcclient, {"x": x}), client_timeout=60)
        np.testing.assert_array_equal(result.as_numpy("y"), x)
        return result.get_response().model_version
    finally:
        client.close()


def test_inference_health_and_metadata_stay_open(deployed):
    for path in ("/v2/health/ready", "/v2/health/live", "/v2", "/v2/models/identity", "/v2/models/identity/ready"):
        assert http(deployed, "GET", path).status_code == 200, path
    body = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    answer = http(deployed, "POST", "/v2/models/identity/infer", json=body)
    assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == [1, 2, 3]


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on `port` (/proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def test_metrics_port_listens_where_the_deployment_says(deployed):
    address = flag(deployed.deployment.args, "metrics-address") or "127.0.0.1"
    assert listening_addresses(deployed.metrics_port) == {address}
    metrics = requests.get(f"http://127.0.0.1:{deployed.metrics_port}/metrics", timeout=10).text
    assert 'nv_inference_request_success{model="identity"' in metrics


def test_the_shipped_placeholder_keys_are_refused(tmp_path):
    """No shipped file carries a usable key: the Kubernetes Secret's
    placeholder stops the launcher before it starts anything."""
    for deployment in DEPLOYMENTS.values():
        assert "ADMIN_KEY" not in deployment.env or len(deployment.env["ADMIN_KEY"]) < 16 or deployment.env["ADMIN_KEY"] == "replace-me"
    placeholders = {d.env["ADMIN_KEY"] for d in DEPLOYMENTS.values() if "ADMIN_KEY" in d.env} or {"replace-me"}
    for key in placeholders | {"short-key"}:
        done = subprocess.run(
            [sys.executable, "-m", "runtime.server", "--model-repository", str(tmp_path)],
            env=dict(os.environ, ADMIN_KEY=key), capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 2 and "$ADMIN_KEY is a placeholder or shorter than 16 characters" in done.stderr, done.stderr


RETRY_EVERYTHING = [
    ("grpc.enable_retries", 1),
    ("grpc.service_config", json.dumps({"methodConfig": [{"name": [{"service": "inference.GRPCInferenceService"}], "retryPolicy": {
        "maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]})),
]


def test_a_refused_call_is_not_retried_by_the_project_clients(tmp_path):
    """Triton refuses a locked call with UNAVAILABLE, the status a gRPC retry
    policy retries; the project's policy (clients/common.py) covers the open
    calls only. Attempts are counted in the server's verbose log; a policy
    retrying every call shows the count would see a retry."""
    probe_copy(tmp_path, "identity", 0.0)
    with TritonServer(repositories=[tmp_path], admin_key=TEST_KEYS["ADMIN_KEY"], explicit_model_control=True, log_verbose=1) as server:

        def starts() -> int:
            return len(re.findall(r"Process for RepositoryIndex, rpc_ok=1, \d+ step START", server.log_path.read_text()))

        def attempts(channel_args) -> int:
            before = starts()
            client = grpcclient.InferenceServerClient(server.grpc_url, channel_args=channel_args)
            try:
                with pytest.raises(InferenceServerException, match="restricted"):
                    client.get_model_repository_index()
            finally:
                client.close()
            time.sleep(1.0)  # the log is written as the server goes
            return starts() - before

        assert attempts(GRPC_RETRY_CHANNEL_ARGS) == 1
        assert attempts(RETRY_EVERYTHING) == 3
