"""The few calls the launcher makes to its own tritonserver: the locked
admin APIs (model configuration, repository index, load and unload, with the
admin key) and the pending-request gauge of the metrics port."""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request

ADMIN_HEADER = "admin-key"
GRPC_ADMIN_HEADER = "triton-grpc-protocol-admin-key"  # Triton prefixes the gRPC metadata key
STATS_HEADER = "stats-key"
GRPC_STATS_HEADER = "triton-grpc-protocol-stats-key"
_PENDING = re.compile(r'^nv_inference_pending_request_count\{model="([^"]+)",version="[^"]*"\} (\d+)', re.M)


class TritonApiError(RuntimeError):
    pass


def admin_request(http_url: str, path: str, admin_key: str | None, payload: dict | None = None, method: str = "POST", timeout: float = 300.0) -> tuple[int, bytes]:
    """A call to a (possibly locked) admin endpoint: (status, body)."""
    data = json.dumps(payload if payload is not None else {}).encode() if method == "POST" else None
    request = urllib.request.Request(f"http://{http_url}{path}", data=data, method=method)
    if admin_key:
        request.add_header(ADMIN_HEADER, admin_key)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _json(http_url: str, path: str, admin_key: str | None, method: str = "POST", timeout: float = 30.0):
    try:
        status, body = admin_request(http_url, path, admin_key, method=method, timeout=timeout)
    except OSError as error:
        raise TritonApiError(f"{path}: {error}") from error
    if status != 200:
        raise TritonApiError(f"{path}: HTTP {status}: {body.decode(errors='replace')}")
    return json.loads(body or b"null")


def model_config(http_url: str, model: str, admin_key: str | None, timeout: float = 30.0) -> dict:
    return _json(http_url, f"/v2/models/{model}/config", admin_key, method="GET", timeout=timeout)


def repository_index(http_url: str, admin_key: str | None) -> list[dict]:
    return _json(http_url, "/v2/repository/index", admin_key) or []


def load(http_url: str, model: str, admin_key: str | None, config: dict | None = None, files: dict[str, bytes] | None = None) -> str | None:
    """Load (or reload) a model; with `config`, that configuration instead of
    the repository's, and `files` (path in the model folder -> content)
    instead of its files. None on success, else the server's message."""
    parameters: dict[str, str] = {}
    if config is not None:
        parameters["config"] = json.dumps(config)
    for path, content in (files or {}).items():
        parameters[f"file:{path}"] = base64.b64encode(content).decode()
    payload = {"parameters": parameters} if parameters else {}
    try:
        status, body = admin_request(http_url, f"/v2/repository/models/{model}/load", admin_key, payload)
    except OSError as error:
        return f"load: {error}"
    return None if status == 200 else f"load: HTTP {status}: {body.decode(errors='replace')}"


def pending_requests(metrics_url: str, timeout: float = 5.0) -> dict[str, int]:
    """Model -> requests waiting in its queue (Triton's
    nv_inference_pending_request_count; requests executing are not in it)."""
    with urllib.request.urlopen(f"http://{metrics_url}/metrics", timeout=timeout) as response:
        text = response.read().decode(errors="replace")
    found: dict[str, int] = {}
    for model, count in _PENDING.findall(text):
        found[model] = found.get(model, 0) + int(count)
    return found
