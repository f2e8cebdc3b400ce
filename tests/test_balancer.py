"""Two tritonserver replicas serving one object-storage repository (moto's
S3 server on loopback, each replica on its own synced folder) behind Debian's
nginx (deploy/balancer.py: HTTP and gRPC upstreams, readiness and passive
health checks, limits). Traffic runs through the balancer over HTTP and gRPC
while one replica is killed (SIGKILL, with its stubs) and started again: every
request is answered (in-flight POSTs cut off by the kill are retried by the
client, never by nginx), throughput continues on the survivor, and the
restarted replica takes traffic again. A replica that is not ready leaves the
rotation; oversized bodies (announced or chunked), too many requests and too
many at once are refused by nginx with a clear error before any replica sees
them; a POST that times out is not sent again; nginx's workers are not root.

Subset of models, to stay inside CI's time: `text2ids` (a Python model) and
`datatypes` (an ensemble of two Python models, every Triton data type)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from object_storage_helpers import MotoServer
from requests.adapters import HTTPAdapter
from tritonclient.utils import InferenceServerException
from triton_helpers import make_inputs, wait_until

import deploy.balancer
from clients.common import GRPC_RETRY_CHANNEL_ARGS
from deploy.balancer import HTTP_RETRY, Balancer, Limits, Replica, find_nginx, worker_user
from deploy.object_storage import publish
from runtime.paths import MODEL_REPOSITORY
from runtime.repository_sync import RepositorySync
from runtime.server import TritonServer, free_port
from testsets.entries import datatypes_request

pytestmark = pytest.mark.skipif(find_nginx() is None, reason="nginx is not installed and `make nginx` could not install it (apt-get needs root)")

MODELS = ["text2ids", "datatypes", "datatypes_model1", "datatypes_model2"]
FAIL_TIMEOUT = 3
TEXT = "hello balanced world"
PAYLOAD = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [TEXT]}]}
BIG = 100 << 20  # 100 MB, over the balancer's 64 MiB cap


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
        with requests.Session() as session:
            # the client's own retry of what a dying replica cut off (nginx never replays a POST)
            session.mount("http://", HTTPAdapter(max_retries=HTTP_RETRY))
            while not self.stop.is_set():
                try:
                    reply = session.post(f"http://{self.http_url}/v2/models/text2ids/infer", json=PAYLOAD, timeout=60)
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


def _upstreams(access_log: Path, after: float, expected: int = 0) -> dict[str, int]:
    """Requests per upstream address logged at or after a wall-clock time,
    once `expected` requests are logged (nginx logs a request after it has
    answered it, so the last answers' lines may come a moment later)."""
    deadline = time.monotonic() + 5.0
    while True:
        entries = [entry for entry in _access_log(access_log.parent) if float(entry[0]) >= after]
        if len(entries) >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    counts: dict[str, int] = {}
    for _stamp, _status, upstream, *_ in entries:
        for address in upstream.split(", "):
            counts[address] = counts.get(address, 0) + 1
    return counts


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    """Two replicas, each polling (1 s) a folder its own sync keeps on the published snapshot."""
    workdir = tmp_path_factory.mktemp("balancer")
    s3 = MotoServer(workdir / "moto.log").start()
    servers = []
    try:
        s3.create_bucket("models")
        url = s3.url("models", "replicated")
        publish(url, MODEL_REPOSITORY, MODELS)
        syncs = [RepositorySync(url, workdir / f"replica{i}") for i in range(2)]
        for sync in syncs:
            sync.sync_once()
        servers = [TritonServer(repositories=[sync.repository], poll_secs=1, log_path=workdir / f"replica{i}.log") for i, sync in enumerate(syncs)]
        # one after the other: start() re-assembles the shared build/backends
        for server in servers:
            server.start(timeout=300)
        yield s3, servers, workdir
    finally:
        for server in servers:
            server.stop()
        s3.stop()


def _members(servers: list[TritonServer]) -> list[Replica]:
    return [Replica(f"127.0.0.1:{s.http_port}", f"127.0.0.1:{s.grpc_port}") for s in servers]


def _access_log(workdir: Path) -> list[list[str]]:
    """(time, status, upstreams, upstream statuses, seconds, request) per logged request."""
    path = workdir / "access.log"
    return [line.split("|") for line in path.read_text().splitlines()] if path.exists() else []


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False


def test_killing_a_replica_mid_run_loses_no_request(replicas):
    s3, (first, second), workdir = replicas
    http_port, grpc_port = free_port(), free_port()
    # every client here has one address: the per-client rate limit sized for all of them
    unlimited = Limits(rate="10000r/s", burst=10000)
    balancer = Balancer(workdir, _members([first, second]), http_port, grpc_port, limits=unlimited, fail_timeout=FAIL_TIMEOUT).start()
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{http_port}/v2/health/ready"), 20, lambda: (workdir / "error.log").read_text())
        expected = requests.post(f"http://{second.http_url}/v2/models/text2ids/infer", json=PAYLOAD, timeout=30).json()["outputs"][0]["data"]
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
        log = _access_log(workdir)
        moved = sum(1 for entry in log if ", " in entry[2] and entry[1] == "200")
        # a call cut off in flight: nginx's 502 (gRPC: a trailers-only UNAVAILABLE, logged 204), retried by the client
        cut = sum(1 for entry in log if entry[1] in ("204", "502"))
        print(f"nginx moved {moved} unsent requests to the other replica; {cut} calls cut off in flight, retried by the client")
        assert not traffic.failures, (f"t0 {t0:.2f} killed {killed_at:.2f} restart {restart_at:.2f} restarted {restarted_at:.2f}", traffic.failures[:5])
        assert {p for _, p in traffic.answers} == {"http", "grpc"}
        # throughput never stopped: answers in every second while one replica was down
        for second_start in np.arange(killed_at, restarted_at - 1, 1.0):
            assert traffic.rate(second_start, second_start + 1) > 0, f"no answer {second_start - killed_at:.0f} s after the kill"
        assert alone > 0.3 * both
        served_after = _upstreams(workdir / "access.log", restarted_wall + FAIL_TIMEOUT)
        assert served_after.get(f"127.0.0.1:{first.http_port}", 0) + served_after.get(f"127.0.0.1:{first.grpc_port}", 0) > 0, served_after
    finally:
        balancer.stop()


def _grpc_calls(workdir: Path, method: str) -> int:
    """Attempts of one gRPC method nginx logged (each retry is a stream of its own)."""
    return sum(1 for entry in _access_log(workdir) if entry[5].startswith(f"POST /inference.GRPCInferenceService/{method} "))


def test_grpc_error_from_nginx_is_a_retryable_unavailable(tmp_path):
    """nginx's own gRPC errors (here: the only replica refuses connections)
    reach the client as a trailers-only UNAVAILABLE with the balancer's
    message, the form gRPC's retry policy retries; nginx's default 502 page
    ("Received http2 header with status: 502") commits the call, and gRPC
    does not retry it. The balancer's clients use the project's one policy
    (clients/common.py), which retries the open calls (3 attempts of
    ServerLive) and not the locked ones (1 of RepositoryIndex): Triton
    refuses a locked call without its key as UNAVAILABLE too."""
    assert deploy.balancer.GRPC_RETRY_CHANNEL_ARGS is GRPC_RETRY_CHANNEL_ARGS
    dead = f"127.0.0.1:{free_port()}"
    http_port, grpc_port = free_port(), free_port()
    balancer = Balancer(tmp_path, [Replica(dead, dead)], http_port, grpc_port, fail_timeout=FAIL_TIMEOUT, check_interval=None).start()
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
        time.sleep(0.5)  # the refused calls' own lines, written as they end
        before = {method: _grpc_calls(tmp_path, method) for method in ("ServerLive", "RepositoryIndex")}
        with pytest.raises(InferenceServerException, match="replica unavailable"):
            client.is_server_live()
        with pytest.raises(InferenceServerException, match="replica unavailable"):
            client.get_model_repository_index()
        client.close()
        time.sleep(0.5)  # nginx writes the access log as the requests end
        attempts = {method: _grpc_calls(tmp_path, method) - count for method, count in before.items()}
        assert attempts == {"ServerLive": 3, "RepositoryIndex": 1}, attempts
    finally:
        balancer.stop()


def _infer(base: str, session=requests) -> requests.Response:
    return session.post(f"{base}/v2/models/text2ids/infer", json=PAYLOAD, timeout=30)


def _chunks(total: int, size: int = 1 << 20):
    """A body sent chunked (no Content-Length)."""
    for _ in range(total // size):
        yield b"x" * size


def test_oversized_bodies_stop_at_the_balancer_and_the_servers_keep_serving(replicas, tmp_path):
    """100 MB bodies, announced and chunked: nginx answers 413 with a JSON
    error and reaches no replica; straight at a replica, tritonserver 2.51 (no
    input size limit of its own) reads them, answers its parse error and
    serves on. A 2 MB valid request still passes (the unprivileged workers
    buffer it in their temp folder)."""
    _, servers, _ = replicas
    with Balancer(tmp_path, _members(servers), free_port(), free_port(), check_interval=None) as balancer:
        base = f"http://127.0.0.1:{balancer.http_port}"
        wait_until(lambda: _answers(f"{base}/v2/health/ready"), 20, lambda: (tmp_path / "error.log").read_text())
        for body in (b"x" * BIG, _chunks(BIG)):
            refused = requests.post(f"{base}/v2/models/text2ids/infer", data=body, timeout=60)
            assert refused.status_code == 413 and "request body over 64m" in refused.json()["error"], refused.text[:200]
            assert _infer(base).status_code == 200
        long_text = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["word " * 400_000]}]}  # 2 MB: over the 1 MB nginx keeps in memory
        assert requests.post(f"{base}/v2/models/text2ids/infer", json=long_text, timeout=120).status_code == 200
        assert "buffered to a temporary file" in (tmp_path / "error.log").read_text()  # written by an unprivileged worker
        log = [entry for entry in _access_log(tmp_path) if entry[1] == "413"]
        assert len(log) == 2 and all(entry[2] == "-" for entry in log), log  # no upstream: no replica saw them
    direct = f"http://{servers[1].http_url}"
    for body in (b"x" * BIG, _chunks(BIG)):
        answer = requests.post(f"{direct}/v2/models/text2ids/infer", data=body, timeout=60)
        print(f"\n100 MB {'chunked' if not isinstance(body, bytes) else 'announced'} junk body straight at tritonserver: {answer.status_code} {answer.text[:100]}")
        assert answer.status_code >= 400 and "failed to parse the request JSON" in answer.json()["error"]
        assert _infer(direct).status_code == 200 and servers[1].is_ready()


def _hold_requests(port: int, count: int) -> list[socket.socket]:
    """Requests in progress: headers announcing a body that never comes."""
    held = []
    for _ in range(count):
        connection = socket.create_connection(("127.0.0.1", port), timeout=10)
        connection.sendall(b"POST /v2/models/text2ids/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        held.append(connection)
    return held


def test_rate_and_concurrency_limits_answer_429_before_any_replica(replicas, tmp_path):
    _, servers, _ = replicas
    limits = Limits(rate="5r/s", burst=5, connections=2)
    with Balancer(tmp_path, _members(servers), free_port(), free_port(), limits=limits, check_interval=None) as balancer:
        base = f"http://127.0.0.1:{balancer.http_port}"
        wait_until(lambda: _answers(f"{base}/v2/health/live"), 20, lambda: (tmp_path / "error.log").read_text())
        time.sleep(2)  # the bucket refills
        with requests.Session() as session:
            answers = [_infer(base, session) for _ in range(30)]
        statuses = [a.status_code for a in answers]
        assert statuses.count(200) >= 6 and statuses.count(429) >= 15, statuses
        assert all("too many requests" in a.json()["error"] for a in answers if a.status_code == 429)
        time.sleep(2)
        held = _hold_requests(balancer.http_port, 2)
        try:
            time.sleep(0.5)
            third = _infer(base)
            assert third.status_code == 429, third.text
        finally:
            for connection in held:
                connection.close()
        time.sleep(2)
        assert _infer(base).status_code == 200
        refused = [entry for entry in _access_log(tmp_path) if entry[1] == "429"]
        assert refused and all(entry[2] == "-" for entry in refused)


def test_nginx_workers_are_not_root(tmp_path):
    """Started as root (as here), the workers run as an unprivileged user;
    started as anyone else, as that user."""
    dead = f"127.0.0.1:{free_port()}"
    expected = pwd.getpwnam(worker_user()).pw_uid if os.geteuid() == 0 else os.geteuid()
    assert expected != 0
    with Balancer(tmp_path, [Replica(dead, dead)], free_port(), free_port(), check_interval=None) as balancer:

        def worker_uids() -> dict[int, set[int]]:
            found = {}
            for pid in _children(balancer.process.pid):
                try:
                    status = Path(f"/proc/{pid}/status").read_text().splitlines()
                except FileNotFoundError:
                    continue
                found[pid] = set(map(int, next(line for line in status if line.startswith("Uid:")).split()[1:]))
            return found

        # a worker is root for the moment between nginx's fork and its setuid (seen on a loaded machine)
        wait_until(lambda: worker_uids() and all(uids == {expected} for uids in worker_uids().values()), 10, lambda: f"worker uids {worker_uids()}")


def _children(pid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(proc.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def test_a_post_that_times_out_is_not_sent_to_another_replica(replicas, tmp_path):
    """One replica hangs (SIGSTOP): a POST routed to it is answered 504
    after the read timeout and never reaches the other replica; a GET routed
    to it goes on to the other one (idempotent)."""
    _, (first, second), _ = replicas
    limits = Limits(read_timeout=2)
    with Balancer(tmp_path, _members([first, second]), free_port(), free_port(), limits=limits, check_interval=None, max_fails=0) as balancer:
        base = f"http://127.0.0.1:{balancer.http_port}"
        wait_until(lambda: _answers(f"{base}/v2/health/ready"), 20, lambda: (tmp_path / "error.log").read_text())
        hung = f"127.0.0.1:{first.http_port}"
        os.killpg(first.process.pid, signal.SIGSTOP)
        stopped = time.time()
        try:
            for _ in range(3):  # round robin: the hung replica gets POSTs and GETs both
                _infer(base)
                requests.get(f"{base}/v2/health/ready", timeout=30)
                requests.get(f"{base}/v2/health/ready", timeout=30)
        finally:
            os.killpg(first.process.pid, signal.SIGCONT)
        log = [entry for entry in _access_log(tmp_path) if float(entry[0]) >= stopped]
        posts = [e for e in log if e[5].startswith("POST") and e[2].startswith(hung)]
        gets = [e for e in log if e[5].startswith("GET /v2/health/ready") and e[2].startswith(hung)]
        assert posts and all(e[1] == "504" and e[2] == hung for e in posts), posts
        assert gets and all(e[1] == "200" and e[2] == f"{hung}, 127.0.0.1:{second.http_port}" for e in gets), gets
        wait_until(first.is_ready, 30)


def test_a_replica_that_is_not_ready_leaves_the_rotation(replicas, tmp_path):
    """A model that fails to load makes a replica not ready (strict
    readiness) while it still answers: the balancer's readiness checks take
    it out, all traffic goes to the other; restarted without the broken
    model, it is ready and back."""
    _, (first, second), _ = replicas
    with Balancer(tmp_path, _members([first, second]), free_port(), free_port(), check_interval=0.5) as balancer:
        base = f"http://127.0.0.1:{balancer.http_port}"
        wait_until(lambda: _answers(f"{base}/v2/health/ready"), 20, lambda: (tmp_path / "error.log").read_text())
        broken = second.repositories[0] / "broken"
        (broken / "1").mkdir(parents=True)
        (broken / "config.pbtxt").write_text('backend: "python"\ninput [{name: "x" data_type: TYPE_FP32 dims: [1]}]\noutput [{name: "y" data_type: TYPE_FP32 dims: [1]}]\n')
        try:
            wait_until(lambda: not second.is_ready(), 30, "the broken model did not make the replica unready")
            assert _infer(f"http://{second.http_url}").status_code == 200  # unready, not dead
            wait_until(lambda: balancer.down == {1}, 10, lambda: f"down {balancer.down}")
            time.sleep(1)  # nginx's reload
            marked = time.time()
            with requests.Session() as session:
                assert all(_infer(base, session).status_code == 200 for _ in range(40))
            served = _upstreams(tmp_path / "access.log", marked, expected=40)
            assert served.get(f"127.0.0.1:{second.http_port}", 0) == 0 and served.get(f"127.0.0.1:{first.http_port}", 0) >= 40, served
        finally:
            shutil.rmtree(broken)
        # a server with a model that failed to load takes its whole exit timeout to stop: not waited for here
        _kill(second)
        second.start(timeout=300)
        wait_until(lambda: balancer.down == frozenset(), 10, lambda: f"down {balancer.down}")
        time.sleep(1)
        back = time.time()
        with requests.Session() as session:
            assert all(_infer(base, session).status_code == 200 for _ in range(20))
        assert _upstreams(tmp_path / "access.log", back, expected=20).get(f"127.0.0.1:{second.http_port}", 0) > 0
