"""deploy/kubernetes: rendered with `kubectl kustomize`, core kinds validated
against the Kubernetes schemas (kubernetes-validate, strict: unknown fields
fail), custom kinds' required fields and cross-references checked, and the
Deployment's flags run on the real tritonserver: they are the flags of `make
serve`, its probes answer, its admin key locks the repository API."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import requests
import yaml

from deploy.object_storage import parse_s3_url
from runtime.paths import MODEL_REPOSITORY, REPO_ROOT
from runtime.server import TritonServer

DEPLOY = REPO_ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.32"  # the kubectl of this machine kind; strict schemas of that release
CORE_KINDS = {"ConfigMap", "Secret", "Deployment", "Service", "HorizontalPodAutoscaler", "ServiceAccount"}
KUBECTL = shutil.which("kubectl")

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl (which carries kustomize) is not installed; no package registry here has it")


def render(folder: str) -> list[dict]:
    done = subprocess.run([KUBECTL, "kustomize", str(DEPLOY / folder)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, (kind, [d["kind"] for d in docs])
    return found[0]


@pytest.fixture(scope="module")
def base():
    return render("base")


@pytest.fixture(scope="module")
def kserve():
    return render("kserve")


def make_default(name: str) -> str:
    return re.search(rf"^{name} \?= (\S+)$", (REPO_ROOT / "Makefile").read_text(), re.M).group(1)


def serve_flags(repository: str, poll_secs: int) -> list[str]:
    """The flags `make serve` gives tritonserver (default ports; a broken model
    reported while the rest serves), minus the local-only ones (backend
    directory, log level, the per-process shared-memory prefix)."""
    server = TritonServer(
        repositories=[repository],
        http_port=int(make_default("HTTP_PORT")),
        grpc_port=int(make_default("GRPC_PORT")),
        metrics_port=int(make_default("METRICS_PORT")),
        poll_secs=poll_secs or None,
        explicit_model_control=not poll_secs,
        exit_on_error=False,
    )
    local = ("--backend-directory=", "--log-verbose=", "--backend-config=")
    return [a for a in server.command(Path("/backends"), Path("tritonserver"))[1:] if not a.startswith(local)]


@pytest.mark.parametrize("folder", ["base", "kserve"])
def test_core_kinds_are_valid_against_the_kubernetes_schemas(folder):
    docs = render(folder)
    core = [d for d in docs if d["kind"] in CORE_KINDS]
    assert core
    for doc in core:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_custom_kinds_have_their_required_fields(base, kserve):
    monitor, service = one(base, "ServiceMonitor"), one(base, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}
    runtime, isvc = one(kserve, "ServingRuntime"), one(kserve, "InferenceService")
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1" and isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert runtime["spec"]["containers"][0]["name"] == "kserve-container" and runtime["spec"]["containers"][0]["image"]
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert parse_s3_url(model["storageUri"]).bucket
    account = one(kserve, "ServiceAccount")
    assert isvc["spec"]["predictor"]["serviceAccountName"] == account["metadata"]["name"]
    assert {s["name"] for s in account["secrets"]} == {one(kserve, "Secret")["metadata"]["name"]}


def test_autoscaler_metric_is_the_one_prometheus_adapter_publishes(base):
    hpa, deployment = one(base, "HorizontalPodAutoscaler"), one(base, "Deployment")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}
    (metric,) = hpa["spec"]["metrics"]
    rules = yaml.safe_load((DEPLOY / "monitoring" / "prometheus-adapter-values.yaml").read_text())["rules"]["custom"]
    published = {rule["name"]["as"]: rule for rule in rules}
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] in published
    query = published[metric["pods"]["metric"]["name"]]["metricsQuery"]
    assert "nv_inference_queue_duration_us" in query and "nv_inference_request_success" in query


def _substitute(args: list[str], env: dict[str, str]) -> list[str]:
    for arg in args:
        for name in re.findall(r"\$\((\w+)\)", arg):
            assert name in env, f"{arg}: ${name} has no env entry"
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in args]


def _container_env(container: dict, docs: list[dict]) -> dict[str, str]:
    """The container's environment as Kubernetes would resolve it."""
    sources = {(d["kind"], d["metadata"]["name"]): d.get("data") or d.get("stringData") or {} for d in docs if d["kind"] in ("ConfigMap", "Secret")}
    env = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]
        kind, key = ("ConfigMap", "configMapKeyRef") if "configMapKeyRef" in ref else ("Secret", "secretKeyRef")
        source = sources[(kind, ref[key]["name"])]
        assert ref[key]["key"] in source, (item["name"], ref)
        env[item["name"]] = source[ref[key]["key"]]
    return env


def test_deployment_runs_make_serves_flags_from_object_storage_in_poll_mode(base):
    deployment = one(base, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = _container_env(container, base)
    args = _substitute(container["args"], env)
    assert env["MODEL_REPOSITORY"].startswith(("s3://", "gs://", "as://"))
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "ADMIN_KEY"} <= env.keys()
    expected = serve_flags(env["MODEL_REPOSITORY"], int(env["REPOSITORY_POLL_SECS"]))
    assert sorted(a for a in args if not a.startswith(("--http-restricted-api", "--grpc-restricted-protocol"))) == sorted(expected)
    # the same APIs locked over both protocols (gRPC's flag says "protocol")
    for flag in ("--http-restricted-api", "--grpc-restricted-protocol"):
        assert f"{flag}=model-repository,model-config,shared-memory,trace,logging:admin-key={env['ADMIN_KEY']}" in args
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    flags = dict(a[2:].split("=", 1) for a in args)
    assert ports == {"http": int(flags["http-port"]), "grpc": int(flags["grpc-port"]), "metrics": int(flags["metrics-port"])}
    service = one(base, "Service")
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == "http"
    assert container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"] >= 300
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]


def test_kserve_runtime_runs_make_serves_flags(kserve):
    (container,) = one(kserve, "ServingRuntime")["spec"]["containers"]
    flags = serve_flags("/mnt/models", poll_secs=0)
    # KServe's ports (HTTP 8080, gRPC 9000) instead of make serve's
    expected = [{"--http-port=8000": "--http-port=8080", "--grpc-port=8001": "--grpc-port=9000"}.get(f, f) for f in flags]
    assert sorted(container["args"]) == sorted(expected)


def test_the_deployments_flags_start_the_real_server(base, tmp_path):
    """The manifest's arguments on tritonserver itself (a one-model local
    repository and free ports instead of object storage and 8000-8002): it
    starts, the probes' paths answer, the admin key guards the repository API."""
    (container,) = one(base, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {**_container_env(container, base), "ADMIN_KEY": "key-from-the-secret", "REPOSITORY_POLL_SECS": "5"}
    args = _substitute(container["args"], env)
    kept = [a for a in args if not a.startswith(("--model-repository=", "--http-port=", "--grpc-port=", "--metrics-port="))]
    shutil.copytree(MODEL_REPOSITORY / "text2ids", tmp_path / "repo" / "text2ids", ignore=shutil.ignore_patterns("__pycache__"))
    with TritonServer(repositories=[tmp_path / "repo"], extra_args=kept) as server:
        base_url = f"http://{server.http_url}"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert requests.get(base_url + container[probe]["httpGet"]["path"], timeout=5).status_code == 200, probe
        assert requests.post(f"{base_url}/v2/repository/index", timeout=5).status_code != 200
        allowed = requests.post(f"{base_url}/v2/repository/index", headers={"admin-key": "key-from-the-secret"}, timeout=5)
        assert allowed.status_code == 200 and allowed.json()[0]["name"] == "text2ids"
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        client = grpcclient.InferenceServerClient(server.grpc_url)
        try:
            with pytest.raises(InferenceServerException):
                client.get_model_repository_index()
            # over gRPC, Triton 2.51 expects the key under its own prefix
            grpc_header = {"triton-grpc-protocol-admin-key": "key-from-the-secret"}
            assert client.get_model_repository_index(headers=grpc_header).models[0].name == "text2ids"
        finally:
            client.close()
