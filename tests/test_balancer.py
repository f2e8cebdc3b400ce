"""Two tritonserver replicas serving one object-storage repository (moto's
S3 server on loopback) behind Debian's nginx (deploy/balancer.py: HTTP and
gRPC upstreams, passive health checks, retry of failed requests on the other
replica). Traffic runs through the balancer over HTTP and gRPC while one
replica is killed (SIGKILL, with its stubs) and started again: every request
is answered, throughput continues on the survivor, and the restarted replica
takes traffic again.

Subset of models, to stay inside CI's time: `text2ids` (a Python model) and
`datatypes` (an ensemble of two Python models, every Triton data type)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from object_storage_helpers import MotoServer
from triton_helpers import make_inputs, wait_until

from deploy.balancer import GRPC_RETRY_CHANNEL_ARGS, Replica, find_nginx, nginx_config, start_nginx
from deploy.object_storage import publish
from runtime.paths import MODEL_REPOSITORY
from testsets.entries import datatypes_request
from runtime.server import TritonServer, free_port

pytestmark = pytest.mark.skipif(find_nginx() is None, reason="nginx is not installed and `make nginx` could not install it (apt-get needs root)")

MODELS = ["text2ids", "datatypes", "datatypes_model1", "datatypes_model2"]
FAIL_TIMEOUT = 3
TEXT = "hello balanced world"


def _stub_shm_regions(pgid: int) -> list[str]:
    """The /dev/shm regions of a server's Python stubs (their last argument),
    which a SIGKILL leaves behind."""
    regions = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.getpgid(int(proc.name)) != pgid:
                continue
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ProcessLookupError):
            continue
        regions += [a.decode() for a in args if a.startswith(b"triton_") and b"shm_region" in a]
    return regions


def _kill(server: TritonServer) -> None:
    regions = _stub_shm_regions(server.process.pid)
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()
    time.sleep(0.5)
    for region in regions:
        Path("/dev/shm", region).unlink(missing_ok=True)


class Traffic:
    """Closed-loop clients through the balancer: HTTP JSON on text2ids and
    gRPC on the datatypes ensemble (with gRPC's retry of UNAVAILABLE: see
    deploy/balancer.py), each answer checked."""

    def __init__(self, http_url: str, grpc_url: str, expected_ids: list[int], threads: int = 2):
        self.http_url, self.grpc_url = http_url, grpc_url
        self.answers: list[tuple[float, str]] = []  # (time, protocol)
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.expected_ids = expected_ids
        self.workers = [threading.Thread(target=self._http) for _ in range(threads)]
        self.workers += [threading.Thread(target=self._grpc) for _ in range(threads)]

    def _http(self):
        payload = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [TEXT]}]}
        with requests.Session() as session:
            while not self.stop.is_set():
                try:
                    reply = session.post(f"http://{self.http_url}/v2/models/text2ids/infer", json=payload, timeout=60)
                    reply.raise_for_status()
                    ids = reply.json()["outputs"][0]["data"]
                    assert ids == self.expected_ids, ids
                    self.answers.append((time.monotonic(), "http"))
                except Exception as error:
                    self.failures.append(f"http {time.monotonic():.2f} {error!r}")

    def _grpc(self):
        client = grpcclient.InferenceServerClient(self.grpc_url, channel_args=GRPC_RETRY_CHANNEL_ARGS)
        seed = 0
        while not self.stop.is_set():
            seed += 1
            tensors = datatypes_request(2, seed)
            try:
                result = client.infer("datatypes", make_inputs(grpcclient, tensors), client_timeout=60)
                for name, sent in tensors.items():
                    got = result.as_numpy(name.replace("input", "output"))
                    assert np.array_equal(got, sent), name
                self.answers.append((time.monotonic(), "grpc"))
            except Exception as error:
                detail = f"{error.status()} {error.message()} {error.debug_details()}" if hasattr(error, "status") else repr(error)
                self.failures.append(f"grpc {time.monotonic():.2f} {detail}")
        client.close()

    def __enter__(self):
        for worker in self.workers:
            worker.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for worker in self.workers:
            worker.join(120)

    def rate(self, start: float, end: float) -> float:
        return sum(1 for t, _ in self.answers if start <= t < end) / max(end - start, 1e-9)


def _upstreams(access_log: Path, after: float) -> dict[str, int]:
    """Requests per upstream address logged at or after a wall-clock time."""
    counts: dict[str, int] = {}
    for line in access_log.read_text().splitlines():
        stamp, _status, upstream, *_ = line.split("|")
        if float(stamp) >= after:
            for address in upstream.split(", "):
                counts[address] = counts.get(address, 0) + 1
    return counts


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("balancer")
    s3 = MotoServer(workdir / "moto.log").start()
    servers = []
    try:
        s3.create_bucket("models")
        url = s3.url("models", "replicated")
        publish(url, MODEL_REPOSITORY, MODELS)
        servers = [TritonServer(repositories=[url], log_path=workdir / f"replica{i}.log") for i in range(2)]
        # one after the other: start() re-assembles the shared build/backends
        for server in servers:
            server.start(timeout=300)
        yield s3, servers, workdir
    finally:
        for server in servers:
            server.stop()
        s3.stop()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False


def test_killing_a_replica_mid_run_loses_no_request(replicas):
    s3, (first, second), workdir = replicas
    http_port, grpc_port = free_port(), free_port()
    members = [Replica(f"127.0.0.1:{s.http_port}", f"127.0.0.1:{s.grpc_port}") for s in (first, second)]
    nginx = start_nginx(workdir, nginx_config(workdir, members, http_port, grpc_port, fail_timeout=FAIL_TIMEOUT))
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{http_port}/v2/health/ready"), 20, lambda: (workdir / "error.log").read_text())
        expected = requests.post(
            f"http://{second.http_url}/v2/models/text2ids/infer",
            json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [TEXT]}]},
            timeout=30,
        ).json()["outputs"][0]["data"]
        with Traffic(f"127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", expected) as traffic:
            t0 = time.monotonic()
            time.sleep(3)
            killed_at = time.monotonic()
            _kill(first)
            time.sleep(3)
            restart_at = time.monotonic()
            first.start(timeout=300)  # same ports: nginx finds it again after fail_timeout
            restarted_at, restarted_wall = time.monotonic(), time.time()
            time.sleep(FAIL_TIMEOUT + 3)
            end = time.monotonic()
        both, alone, restored = traffic.rate(t0, killed_at), traffic.rate(killed_at, restarted_at), traffic.rate(restarted_at + FAIL_TIMEOUT, end)
        total = len(traffic.answers)
        print(
            f"\n{total} requests through nginx, {len(traffic.failures)} failed; requests/s: both replicas {both:.0f}, "
            f"one (killed at {killed_at - t0:.1f} s, restarted in {restarted_at - restart_at:.1f} s) {alone:.0f}, restored {restored:.0f}"
        )
        log = (workdir / "access.log").read_text().splitlines()
        moved = sum(1 for line in log if ", " in line.split("|")[2] and line.split("|")[1] == "200")
        # a gRPC call cut off in flight: nginx's 502, answered as a trailers-only UNAVAILABLE (logged 204)
        cut = sum(1 for line in log if line.split("|")[1] in ("204", "502"))
        print(f"nginx moved {moved} requests to the other replica; {cut} gRPC calls cut off in flight (UNAVAILABLE), retried by the client")
        assert not traffic.failures, (f"t0 {t0:.2f} killed {killed_at:.2f} restart {restart_at:.2f} restarted {restarted_at:.2f}", traffic.failures[:5])
        assert {p for _, p in traffic.answers} == {"http", "grpc"}
        # throughput never stopped: answers in every second while one replica was down
        for second_start in np.arange(killed_at, restarted_at - 1, 1.0):
            assert traffic.rate(second_start, second_start + 1) > 0, f"no answer {second_start - killed_at:.0f} s after the kill"
        assert alone > 0.3 * both
        served_after = _upstreams(workdir / "access.log", restarted_wall + FAIL_TIMEOUT)
        assert served_after.get(f"127.0.0.1:{first.http_port}", 0) + served_after.get(f"127.0.0.1:{first.grpc_port}", 0) > 0, served_after
    finally:
        nginx.terminate()
        nginx.wait(10)


def test_grpc_error_from_nginx_is_a_retryable_unavailable(tmp_path):
    """nginx's own gRPC errors (here: the only replica refuses connections)
    reach the client as a trailers-only UNAVAILABLE with the balancer's
    message, the form gRPC's retry policy retries; nginx's default 502 page
    ("Received http2 header with status: 502") commits the call, and gRPC
    does not retry it."""
    dead = f"127.0.0.1:{free_port()}"
    http_port, grpc_port = free_port(), free_port()
    nginx = start_nginx(tmp_path, nginx_config(tmp_path, [Replica(dead, dead)], http_port, grpc_port, fail_timeout=FAIL_TIMEOUT))
    try:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}", channel_args=GRPC_RETRY_CHANNEL_ARGS)
        last_error = [""]

        def refused_by_the_balancer() -> bool:
            try:
                client.is_server_live()
            except Exception as error:  # noqa: BLE001 - the first refusal may be nginx still starting
                status = error.status() if hasattr(error, "status") else ""
                last_error[0] = f"{status} {error}"
                return "UNAVAILABLE" in str(status) and "replica unavailable" in error.message()
            pytest.fail("a call to a dead replica succeeded")

        wait_until(refused_by_the_balancer, 20, lambda: last_error[0])
        client.close()
    finally:
        nginx.terminate()
        nginx.wait(10)
