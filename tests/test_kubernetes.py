"""deploy/kubernetes: rendered with `kubectl kustomize`, core kinds validated
against the Kubernetes schemas (kubernetes-validate, strict: unknown fields
fail), custom kinds' required fields and cross-references checked; no Secret
and no placeholder ships (the operator's Secrets are added here by an
overlay, as docs/deployment.md creates them); a PodDisruptionBudget, a
NetworkPolicy, pod anti-affinity and read-only root filesystems with the
writable volumes each container needs; KServe's Prometheus annotations
where KServe reads them; and the pod's repository sync, run as the manifest
ships it against a real S3 API, fills the folder its server serves.
tests/test_deployments.py starts each manifest's launcher."""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import kubernetes_validate
import pytest
import requests
import yaml
from object_storage_helpers import MotoServer
from triton_helpers import wait_until

from deploy.object_storage import parse_s3_url, publish
from runtime.paths import MODEL_REPOSITORY, REPO_ROOT
from runtime.remote_repository import SNAPSHOTS, SNAPSHOT_ID
from runtime.server import EXIT_TIMEOUT_S, TritonServer

DEPLOY = REPO_ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.32"  # the kubectl of this machine kind; strict schemas of that release
CORE_KINDS = {"ConfigMap", "Secret", "Deployment", "Service", "HorizontalPodAutoscaler", "ServiceAccount", "PodDisruptionBudget", "NetworkPolicy"}
KUBECTL = shutil.which("kubectl")
# The Secrets docs/deployment.md has the operator create, per folder: name -> keys
OPERATOR_SECRETS = {
    "base": {"triton-pipelines-storage": ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"], "triton-pipelines-admin": ["admin-key", "stats-key"]},
    "kserve": {"triton-pipelines-s3": ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"], "triton-pipelines-admin": ["admin-key", "stats-key"]},
}
OPERATOR_KEY = "operator-key-0123456789abcdef"

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl (which carries kustomize) is not installed; no package registry here has it")


def kustomize(folder) -> list[dict]:
    done = subprocess.run([KUBECTL, "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def render(folder: str) -> list[dict]:
    return kustomize(DEPLOY / folder)


def render_with_operator_secrets(folder: str, overlay) -> list[dict]:
    """The folder as an operator applies it: plus the Secrets docs/deployment.md creates."""
    overlay.mkdir(parents=True, exist_ok=True)
    generated = [
        {"name": name, "literals": [f"{key}={OPERATOR_KEY}" for key in keys]} for name, keys in OPERATOR_SECRETS[folder].items()
    ]
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(DEPLOY / folder, overlay)],  # kustomize takes no absolute base
        "generatorOptions": {"disableNameSuffixHash": True},
        "secretGenerator": generated,
    }
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return kustomize(overlay)


def one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, (kind, [d["kind"] for d in docs])
    return found[0]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return render_with_operator_secrets("base", tmp_path_factory.mktemp("overlay-base"))


@pytest.fixture(scope="module")
def kserve(tmp_path_factory):
    return render_with_operator_secrets("kserve", tmp_path_factory.mktemp("overlay-kserve"))


def make_default(name: str) -> str:
    return re.search(rf"^{name} \?= (\S+)$", (REPO_ROOT / "Makefile").read_text(), re.M).group(1)


def flags(args: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)


@pytest.mark.parametrize("folder", ["base", "kserve"])
def test_core_kinds_are_valid_against_the_kubernetes_schemas(folder, tmp_path):
    for docs in (render(folder), render_with_operator_secrets(folder, tmp_path / "overlay")):
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
    # one immutable snapshot of what the base deployment follows
    location = parse_s3_url(model["storageUri"])
    published = one(base, "ConfigMap")["data"]["REPOSITORY_URL"]
    folder, snapshot = location.prefix.rsplit("/", 1)
    assert f"s3://{location.bucket}/{folder}" == f"{published}/{SNAPSHOTS}" and SNAPSHOT_ID.match(snapshot)
    account = one(kserve, "ServiceAccount")
    assert isvc["spec"]["predictor"]["serviceAccountName"] == account["metadata"]["name"]
    assert {s["name"] for s in account["secrets"]} <= {d["metadata"]["name"] for d in kserve if d["kind"] == "Secret"}


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


def _values(doc: dict) -> dict[str, str]:
    if doc["kind"] == "Secret" and "data" in doc:  # what a secretGenerator writes: base64
        return {key: base64.b64decode(value).decode() for key, value in doc["data"].items()}
    return doc.get("data") or doc.get("stringData") or {}


def _container_env(container: dict, docs: list[dict]) -> dict[str, str]:
    """The container's environment as Kubernetes would resolve it."""
    sources = {(d["kind"], d["metadata"]["name"]): _values(d) for d in docs if d["kind"] in ("ConfigMap", "Secret")}
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


def _sync_container(pod: dict) -> dict:
    (sync,) = [c for c in pod.get("initContainers", []) if c["name"] == "repository-sync"]
    return sync


def test_deployment_runs_make_serves_flags_from_object_storage_in_poll_mode(base):
    """The launcher (make serve's) polls the folder the pod's repository sync
    keeps on the published snapshot; ports, probes, volumes, user, resources."""
    deployment = one(base, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = _container_env(container, base)
    args = flags(_substitute(container["args"], env))
    assert container["command"][1:] == ["-m", "runtime.server"]
    assert args["model-repository"] == env["MODEL_REPOSITORY"] and args["repository-poll-secs"] == env["REPOSITORY_POLL_SECS"]
    assert env["ADMIN_KEY"] == OPERATOR_KEY and "AWS_SECRET_ACCESS_KEY" not in env  # the server never reads object storage
    sync = _sync_container(pod)
    sync_env = _container_env(sync, base)
    url, root, *rest = _substitute(sync["args"], sync_env)
    assert url == sync_env["REPOSITORY_URL"] and url.startswith("s3://") and {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= sync_env.keys()
    assert sync["restartPolicy"] == "Always" and sync["command"][1:] == ["-m", "runtime.repository_sync"]
    assert env["MODEL_REPOSITORY"] == f"{root}/repository" and rest == [f"--interval={env['REPOSITORY_POLL_SECS']}"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    defaults = {"http": "HTTP_PORT", "grpc": "GRPC_PORT", "metrics": "METRICS_PORT"}
    assert ports == {name: int(args[f"{name}-port"]) for name in defaults} == {name: int(make_default(v)) for name, v in defaults.items()}
    service = one(base, "Service")
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == "http"
    assert container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"] >= 300
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"]["medium"] == "Memory"
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]


def test_kserve_runtime_runs_make_serves_flags(kserve):
    """The launcher on the storage initializer's copy, on KServe's ports
    (HTTP 8080, gRPC 9000), metrics where the runtime's annotations say."""
    runtime = one(kserve, "ServingRuntime")
    (container,) = runtime["spec"]["containers"]
    args = flags(container["args"])
    assert container["command"][1:] == ["-m", "runtime.server"]
    assert (args["model-repository"], args["http-port"], args["grpc-port"]) == ("/mnt/models", "8080", "9000")
    assert args["metrics-port"] == runtime["spec"]["annotations"]["prometheus.kserve.io/port"]


# --- issue 39: what a cluster admin checks ------------------------------------


def test_no_secret_and_no_placeholder_ships(base, kserve):
    """Secrets are the operator's (docs/deployment.md names each); nothing
    under deploy/kubernetes carries a placeholder value."""
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            assert not re.search(r"replace-me|change-?me|<your", path.read_text(), re.I), path
    for folder in ("base", "kserve"):
        assert not [d for d in render(folder) if d["kind"] == "Secret"], folder
    docs = (REPO_ROOT / "docs" / "deployment.md").read_text()
    for folder, docs_rendered in (("base", base), ("kserve", kserve)):
        referenced = set()
        for workload in docs_rendered:
            for container in _all_containers(workload):
                referenced |= {e["valueFrom"]["secretKeyRef"]["name"] for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
        referenced |= {s["name"] for d in docs_rendered if d["kind"] == "ServiceAccount" for s in d.get("secrets", [])}
        assert referenced == set(OPERATOR_SECRETS[folder]), (folder, referenced)
        for name in referenced:
            assert f"kubectl create secret generic {name}" in docs, f"docs/deployment.md does not say how to create {name}"


def _all_containers(doc: dict) -> list[dict]:
    if doc["kind"] == "Deployment":
        pod = doc["spec"]["template"]["spec"]
        return pod["containers"] + pod.get("initContainers", [])
    if doc["kind"] == "ServingRuntime":
        return doc["spec"]["containers"]
    return []


def test_a_disruption_budget_and_anti_affinity_keep_replicas_apart(base, kserve):
    deployment, budget, hpa = one(base, "Deployment"), one(base, "PodDisruptionBudget"), one(base, "HorizontalPodAutoscaler")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]
    (term,) = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    (spread,) = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone" and spread["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    # KServe labels a predictor's pods with its InferenceService's name
    isvc_label = {"serving.kserve.io/inferenceservice": one(kserve, "InferenceService")["metadata"]["name"]}
    assert one(kserve, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == isvc_label
    assert one(kserve, "PodDisruptionBudget")["spec"]["maxUnavailable"] < one(kserve, "InferenceService")["spec"]["predictor"]["minReplicas"]
    (term,) = one(kserve, "ServingRuntime")["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == isvc_label


def test_the_network_policy_admits_clients_prometheus_and_object_storage_only(base):
    policy, deployment, service = one(base, "NetworkPolicy"), one(base, "Deployment"), one(base, "Service")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    container_ports = {p["name"] for p in container["ports"]}
    inference, metrics = policy["spec"]["ingress"]
    assert {p["port"] for p in inference["ports"]} == {"http", "grpc"} and {p["port"] for p in metrics["ports"]} == {"metrics"}
    assert {"http", "grpc", "metrics"} <= container_ports and {p["targetPort"] for p in service["spec"]["ports"]} == container_ports
    assert metrics["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    prometheus = yaml.safe_load((DEPLOY / "monitoring" / "prometheus-adapter-values.yaml").read_text())["prometheus"]["url"]
    assert ".monitoring.svc" in prometheus  # the namespace the policy admits
    egress = {(p["port"], p["protocol"]) for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert egress == {(53, "UDP"), (53, "TCP"), (443, "TCP")}


def test_root_filesystems_are_read_only_and_writes_go_to_volumes(base, kserve):
    """Every container's root filesystem is read-only; the server writes to
    /tmp and /dev/shm (emptyDir volumes) and only reads the synced models;
    the sync writes the models volume."""
    pod = one(base, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for container in pod["containers"] + pod["initContainers"]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, container["name"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False and container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        for mount in container["volumeMounts"]:
            assert "emptyDir" in volumes[mount["name"]], mount
    (server,) = pod["containers"]
    mounts = {m["mountPath"]: m for m in server["volumeMounts"]}
    assert {"/tmp", "/dev/shm", "/models"} <= mounts.keys() and mounts["/models"].get("readOnly") is True
    env = _container_env(server, base)
    assert env["MODEL_REPOSITORY"].startswith("/models/") and all(env[k].startswith("/tmp/") for k in env if k.endswith("_KEY_FILE"))
    assert env["HOME"] == "/tmp"  # caches under ~ land on the volume
    sync_mounts = {m["mountPath"]: m for m in _sync_container(pod)["volumeMounts"]}
    assert sync_mounts["/models"]["name"] == mounts["/models"]["name"] and not sync_mounts["/models"].get("readOnly")
    runtime = one(kserve, "ServingRuntime")["spec"]
    kserve_volumes = {v["name"]: v for v in runtime["volumes"]}
    (container,) = runtime["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {m["mountPath"] for m in container["volumeMounts"] if "emptyDir" in kserve_volumes[m["name"]]} == {"/tmp", "/dev/shm"}
    assert {e["name"]: e.get("value") for e in container["env"]}["HOME"] == "/tmp"


def test_kserve_prometheus_annotations_are_where_kserve_reads_them(kserve):
    runtime, isvc = one(kserve, "ServingRuntime"), one(kserve, "InferenceService")
    assert not [k for k in runtime["metadata"].get("annotations", {}) if k.startswith("prometheus")]
    assert runtime["spec"]["annotations"] == {"prometheus.kserve.io/port": "8002", "prometheus.kserve.io/path": "/metrics"}
    assert isvc["metadata"]["annotations"]["serving.kserve.io/enable-prometheus-scraping"] == "true"


def test_the_pods_repository_sync_as_shipped_fills_what_its_server_serves(base, tmp_path, monkeypatch):
    """The sidecar's command and arguments as rendered (the ConfigMap's URL
    swapped for moto's, /models for a folder here): its startup probe passes
    once the first sync is done, and the launcher's --model-repository then
    holds the published models, which a real server loads and answers from."""
    pod = one(base, "Deployment")["spec"]["template"]["spec"]
    sync = _sync_container(pod)
    (server,) = pod["containers"]
    store = MotoServer(tmp_path / "moto.log").start()
    process = None
    try:
        store.create_bucket("pipelines")
        url = store.url("pipelines", "repository")
        publish(url, MODEL_REPOSITORY, ["text2ids"], log=lambda line: None)
        root = tmp_path / "models"
        env = {**_container_env(sync, base), "REPOSITORY_URL": url}
        command = [sys.executable if part == "python3" else part for part in sync["command"]]
        args = [str(root) if arg == "/models" else arg for arg in _substitute(sync["args"], env)]
        process = subprocess.Popen(command + args, cwd=REPO_ROOT, env={**os.environ, **{k: v for k, v in env.items() if not k.startswith("AWS_")}})
        probe = [part.replace("/models", str(root)) for part in sync["startupProbe"]["exec"]["command"]]
        wait_until(lambda: subprocess.run(probe).returncode == 0, 60, "the sidecar's startup probe never passed")
        repository = _container_env(server, base)["MODEL_REPOSITORY"].replace("/models", str(root), 1)
        monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
        with TritonServer(repositories=[repository]) as triton:
            answer = requests.post(
                f"http://{triton.http_url}/v2/models/text2ids/infer",
                json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hello"]}]},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert process.wait(30) == 0 and time.monotonic() - started < 30
    finally:
        if process is not None and process.poll() is None:
            process.kill()
        store.stop()


# --- issue 38: the drain on SIGTERM fits in the termination grace -----------------

TERMINATION_MARGIN_S = 15


def test_termination_grace_covers_the_prestop_hook_the_drain_and_the_exit_timeout(base, kserve):
    """A terminating pod gets the preStop hook's sleep (the Service drops it
    meanwhile), then SIGTERM: the launcher's drain (--drain-grace-secs), then
    tritonserver's exit timeout; the grace period is their sum plus a margin,
    so the kubelet's SIGKILL never cuts a drain short."""
    pods = {
        "base": (one(base, "Deployment")["spec"]["template"]["spec"], one(base, "Deployment")["spec"]["template"]["spec"]["containers"][0]),
        "kserve": (one(kserve, "InferenceService")["spec"]["predictor"], one(kserve, "ServingRuntime")["spec"]["containers"][0]),
    }
    for folder, (pod, container) in pods.items():
        command, seconds = container["lifecycle"]["preStop"]["exec"]["command"]
        needed = int(seconds) + float(flags(container["args"])["drain-grace-secs"]) + EXIT_TIMEOUT_S + TERMINATION_MARGIN_S
        assert command == "sleep" and pod["terminationGracePeriodSeconds"] == needed, (folder, pod["terminationGracePeriodSeconds"], needed)
