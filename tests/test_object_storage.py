"""The repository served from object storage, against a real S3 API on
loopback (moto's server mode): `make publish`'s snapshots (copies of what did
not change, multipart uploads, SHA-256 verification, the switch, pruning),
the sync that keeps a local folder on the served snapshot
(runtime/repository_sync.py), the whole exported repository served that way
answering like the local one, poll mode picking up a version published
slowly under traffic without ever meeting half a model, an object-store
outage that leaves the models serving (where tritonserver polling s3:// itself
unloads them all), `make serve`'s launcher following a published root (a new
publish served, an outage survived, nothing left behind), and clear, fast
failures for wrong credentials, a missing bucket, an empty or unreachable
store and a server environment without the serving package."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from deployments import make_serve, with_flags
from lifecycle import Launcher
from object_storage_helpers import MotoServer, RepositoryWatcher, manifest_states, slowed_client
from test_contracts import ENTRIES, outputs_of
from triton_helpers import wait_until

from deploy.object_storage import current, model_files, parse_s3_url, publish, s3_client
from runtime.paths import MODEL_REPOSITORY
from runtime.remote_repository import POINTER, SNAPSHOT_ID, StorageError, read_manifest, read_pointer
from runtime.repository_sync import RepositorySync
from runtime.server import ServerStartError, TritonServer, check_serving_package, free_port, is_published_root

POLL_SECS = 2
SYNC_SECS = 1.0
POLLED_MODELS = ["text2ids", "datatypes", "datatypes_model1", "datatypes_model2"]
BUCKET = "models"
PAYLOAD = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hello object storage"]}]}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log").start()
    server.create_bucket(BUCKET)
    yield server
    server.stop()


@contextmanager
def served_by_sync(url: str, root: Path, poll_secs: int | None = POLL_SECS, **server_args):
    """What a deployment runs: a first sync, tritonserver on the local folder
    (poll mode), the sync cycling in the background."""
    sync = RepositorySync(url, root, interval=SYNC_SECS)
    sync.sync_once()
    server = TritonServer(repositories=[sync.repository], poll_secs=poll_secs, **server_args)
    try:
        server.start(timeout=600)
        sync.start()
        yield sync, server
    finally:
        sync.stop()
        server.stop()


@pytest.fixture
def remote(s3, tmp_path):
    """The whole exported repository, published, synced, served."""
    url = s3.url(BUCKET, "pipelines/v1")
    started = time.monotonic()
    publish(url, MODEL_REPOSITORY)
    published = time.monotonic()
    with served_by_sync(url, tmp_path / "served", poll_secs=None) as (sync, server):
        print(f"\npublish {published - started:.1f} s, sync and serve until READY {time.monotonic() - published:.1f} s")
        yield url, server


@pytest.fixture
def polled(s3, tmp_path):
    """A few models, published, followed by the sync, polled by the server."""
    url = s3.url(BUCKET, "pipelines/polled")
    publish(url, MODEL_REPOSITORY, POLLED_MODELS)
    with served_by_sync(url, tmp_path / "served") as (sync, server):
        yield url, sync, server


def test_parse_s3_urls():
    assert parse_s3_url("s3://bucket/a/b/") == parse_s3_url("s3://bucket/a/b")
    location = parse_s3_url("s3://127.0.0.1:9000/bucket/a/b")
    assert (location.bucket, location.prefix, location.endpoint_url) == ("bucket", "a/b", "http://127.0.0.1:9000")
    assert parse_s3_url("s3://https://minio.local:443/b").endpoint_url == "https://minio.local:443"
    assert parse_s3_url("s3://bucket").prefix == ""


def _keys(client, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_publish_uploads_model_folders_only_and_verifies(s3, tmp_path):
    repository = tmp_path / "repo"
    shutil.copytree(MODEL_REPOSITORY / "text2ids", repository / "text2ids")
    (repository / "text2ids" / "1" / "__pycache__").mkdir(exist_ok=True)
    (repository / "text2ids" / "1" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"cache")
    (repository / "not_a_model").mkdir()
    (repository / "not_a_model" / "notes.txt").write_text("no config.pbtxt: not uploaded")
    url = s3.url(BUCKET, "publish-check")
    first = publish(url, repository)
    location = parse_s3_url(url)
    client = s3_client(location)
    snapshot = first["snapshot"]
    assert SNAPSHOT_ID.match(snapshot) and read_pointer(client, location)["snapshot"] == snapshot == current(url).rsplit("/", 1)[1]
    keys = _keys(client, f"publish-check/snapshots/{snapshot}/")
    assert keys == sorted(f"publish-check/snapshots/{snapshot}/{k}" for k in model_files(repository)) == [
        f"publish-check/snapshots/{snapshot}/text2ids/1/model.py",
        f"publish-check/snapshots/{snapshot}/text2ids/1/vocab.txt",
        f"publish-check/snapshots/{snapshot}/text2ids/config.pbtxt",
    ]
    assert first["uploaded"] == 3
    # the same files again: nothing written, the served snapshot stays
    assert publish(url, repository)["unchanged"] and read_pointer(client, location)["snapshot"] == snapshot
    # a served object that no longer matches its SHA-256 is not reused: a new
    # snapshot uploads it again and copies the rest inside the store; a file
    # the local folder does not have is not in it
    client.put_object(Bucket=BUCKET, Key=f"publish-check/snapshots/{snapshot}/text2ids/1/vocab.txt", Body=b"tampered")
    client.put_object(Bucket=BUCKET, Key=f"publish-check/snapshots/{snapshot}/text2ids/2/stale.py", Body=b"")
    again = publish(url, repository)
    assert (again["uploaded"], again["copied"], again["unchanged"]) == (1, 2, False)
    new_keys = _keys(client, f"publish-check/snapshots/{again['snapshot']}/")
    assert [k.split("/", 3)[3] for k in new_keys] == sorted(model_files(repository))
    body = client.get_object(Bucket=BUCKET, Key=f"publish-check/snapshots/{again['snapshot']}/text2ids/1/vocab.txt")["Body"].read()
    assert body == (repository / "text2ids" / "1" / "vocab.txt").read_bytes()


def test_large_files_go_up_in_parts_checked_by_sha256_not_etag(s3, tmp_path):
    """A 12 MB file with 5 MB parts: a three-part upload (its ETag is no MD5),
    its SHA-256 in the object's metadata; an object corrupted between upload
    and verification (same size, other bytes) fails the publish, which then
    switches nothing."""
    repository = tmp_path / "repo"
    shutil.copytree(MODEL_REPOSITORY / "text2ids", repository / "text2ids", ignore=shutil.ignore_patterns("__pycache__"))
    weights = repository / "text2ids" / "1" / "weights.bin"
    weights.write_bytes(os.urandom(12 << 20))
    url = s3.url(BUCKET, "multipart")
    location = parse_s3_url(url)
    published = publish(url, repository, part_size=5 << 20)
    client = s3_client(location)
    head = client.head_object(Bucket=BUCKET, Key=f"multipart/snapshots/{published['snapshot']}/text2ids/1/weights.bin")
    manifest = read_manifest(client, location, published["snapshot"])
    assert head["ETag"].strip('"').endswith("-3")
    assert head["Metadata"]["sha256"] == manifest["models"]["text2ids"]["files"]["1/weights.bin"]["sha256"]

    weights.write_bytes(os.urandom(12 << 20))
    corrupting, completing = s3_client(location), []

    def corrupt(**_):
        if completing and completing[-1].endswith("weights.bin"):
            corrupting.put_object(Bucket=BUCKET, Key=completing[-1], Body=os.urandom(12 << 20))

    client.meta.events.register("before-parameter-build.s3.CompleteMultipartUpload", lambda params, **_: completing.append(params["Key"]))
    client.meta.events.register("after-call.s3.CompleteMultipartUpload", corrupt)
    with pytest.raises(StorageError, match=r"failed verification \(not served\).*SHA-256 \[.*weights.bin"):
        publish(url, repository, part_size=5 << 20, client=client)
    assert read_pointer(client, location)["snapshot"] == published["snapshot"]


def test_a_model_removed_locally_is_removed_remotely(s3, tmp_path):
    repository = tmp_path / "repo"
    for model in ("text2ids", "datatypes_model1"):
        shutil.copytree(MODEL_REPOSITORY / model, repository / model, ignore=shutil.ignore_patterns("__pycache__"))
    url = s3.url(BUCKET, "removal")
    location = parse_s3_url(url)
    publish(url, repository, keep=1)
    shutil.rmtree(repository / "datatypes_model1")
    second = publish(url, repository, keep=1)
    client = s3_client(location)
    assert second["removed"] == ["datatypes_model1"] and len(second["pruned"]) == 1
    assert set(read_manifest(client, location, second["snapshot"])["models"]) == {"text2ids"}
    assert not [k for k in _keys(client, "removal/") if "datatypes_model1" in k]
    assert _keys(client, "removal/manifests/") == [f"removal/manifests/{second['snapshot']}.json"]


def test_sync_serves_only_files_that_match_their_sha256(s3, tmp_path):
    """A snapshot object replaced behind the publisher's back (same size,
    other bytes) is refused: the local folder keeps what it served, the
    error names the object."""
    repository = tmp_path / "repo"
    shutil.copytree(MODEL_REPOSITORY / "text2ids", repository / "text2ids", ignore=shutil.ignore_patterns("__pycache__"))
    url = s3.url(BUCKET, "tampered")
    first = publish(url, repository)
    sync = RepositorySync(url, tmp_path / "served", log=lambda line: None)
    assert sync.sync_once()
    served = (sync.repository / "text2ids" / "1" / "vocab.txt").read_bytes()
    (repository / "text2ids" / "1" / "vocab.txt").write_text("changed\n" + served.decode())
    second = publish(url, repository)
    key = f"tampered/snapshots/{second['snapshot']}/text2ids/1/vocab.txt"
    client = s3_client(parse_s3_url(url))
    client.put_object(Bucket=BUCKET, Key=key, Body=b"x" * client.head_object(Bucket=BUCKET, Key=key)["ContentLength"])
    assert not sync.cycle()
    assert "vocab.txt" in sync.errors[-1] and "not served" in sync.errors[-1]
    assert sync.snapshot == first["snapshot"] and (sync.repository / "text2ids" / "1" / "vocab.txt").read_bytes() == served
    # the half-built folder stays beside the served ones, never linked
    assert [os.readlink(link) for link in sync.repository.iterdir()] == [f"../store/{sync.folder_name('text2ids', sync.applied['models']['text2ids'])}"]


def test_make_publish_refuses_without_url():
    done = subprocess.run(["make", "-s", "publish", "REPOSITORY_URL="], capture_output=True, text=True, cwd=MODEL_REPOSITORY.parent)
    assert done.returncode != 0 and "usage: make publish REPOSITORY_URL=s3://" in done.stdout


def test_every_model_ready_and_every_pipeline_answers_like_local(remote, grpc_client):
    url, server = remote
    local_models = {p.name for p in MODEL_REPOSITORY.iterdir() if (p / "config.pbtxt").exists()}
    states = {m["name"]: m.get("state") for m in server.model_states()}
    assert states == {name: "READY" for name in local_models}
    remote_client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        for model, entry in sorted(ENTRIES.items()):
            want = outputs_of(grpc_client, model, entry.good(1))
            got = outputs_of(remote_client, model, entry.good(1))
            assert want.keys() == got.keys(), model
            for name in want:
                assert got[name].dtype == want[name].dtype and np.array_equal(got[name], want[name]), (model, name)
    finally:
        remote_client.close()


def _index_versions(server, model: str) -> dict[str, str]:
    index = requests.post(f"http://{server.http_url}/v2/repository/index", timeout=10).json()
    return {m["version"]: m.get("state") for m in index if m["name"] == model}


def _load_started(server, message: str) -> float:
    """Wall-clock time of the first log line with message (glog: 'I1201 23:54:15.277845 ...', UTC here)."""
    for line in server.log_path.read_text(errors="replace").splitlines():
        if message in line:
            stamp = datetime.strptime(f"{datetime.now().year}{line[1:5]} {line[6:21]}", "%Y%m%d %H:%M:%S.%f")
            return stamp.replace(tzinfo=datetime.now().astimezone().tzinfo).timestamp()
    raise AssertionError(f"{message!r} not in {server.log_path}")


class Traffic:
    """Closed-loop HTTP clients on one model; every answer and failure recorded."""

    def __init__(self, server: TritonServer, model: str, threads: int = 2):
        self.url = f"http://{server.http_url}/v2/models/{model}/infer"
        self.answers: list[tuple[float, str, list]] = []  # (time, version, outputs)
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._workers = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self):
        with requests.Session() as session:
            while not self._stop.is_set():
                try:
                    reply = session.post(self.url, json=PAYLOAD, timeout=30)
                    reply.raise_for_status()
                    body = reply.json()
                    self.answers.append((time.monotonic(), body["model_version"], body["outputs"][0]["data"]))
                except Exception as error:  # every failure counts
                    self.failures.append(f"{time.monotonic():.2f} {error!r}")

    def __enter__(self) -> "Traffic":
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join()


def test_poll_mode_loads_a_slowly_published_version_under_traffic(polled, tmp_path):
    """Version 2 of text2ids published with every write slowed to 0.4 s (the
    publish takes several poll periods) while the server polls and the sync
    cycles every second: no request fails, every model folder ever visible to
    the server is exactly the old or the new published one, the server loads
    version 2 once, and only after the switch."""
    url, sync, server = polled
    model = "text2ids"
    staged = tmp_path / "repo"
    shutil.copytree(MODEL_REPOSITORY / model, staged / model, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(staged / model / "1", staged / model / "2")
    with open(staged / model / "2" / "model.py", "a") as code:
        code.write("# version 2: new bytes to upload\n")
    location = parse_s3_url(url)
    before = read_manifest(s3_client(location), location, sync.snapshot)
    with RepositoryWatcher(sync.repository) as watcher, Traffic(server, model) as traffic:
        time.sleep(1.0)
        started = time.monotonic()
        published = publish(url, staged, [model], client=slowed_client(url, 0.4))
        switched, switched_wall = time.monotonic(), time.time()
        wait_until(lambda: any(v == "2" for t, v, _ in traffic.answers if t > switched), 10 * POLL_SECS, "version 2 never answered")
        time.sleep(1.0)
    after = read_manifest(s3_client(location), location, published["snapshot"])
    assert not traffic.failures, traffic.failures[:3]
    assert watcher.looks > 100 and watcher.seen <= manifest_states(before) | manifest_states(after), watcher.seen - manifest_states(before)
    assert (model, frozenset((p, m["size"]) for p, m in after["models"][model]["files"].items())) in watcher.seen
    first_v2 = min(t for t, v, _ in traffic.answers if v == "2")
    seconds = first_v2 - switched
    noticed = _load_started(server, f"loading: {model}:2") - switched_wall
    log = server.log_path.read_text(errors="replace")
    print(
        f"\npublish took {switched - started:.1f} s (writes slowed); version 2 loading {noticed:.1f} s and answering "
        f"{seconds:.1f} s after the switch (sync {SYNC_SECS:.0f} s, poll {POLL_SECS} s), {len(traffic.answers)} requests, 0 failed, "
        f"{watcher.looks} looks at the served folder, {len(watcher.seen)} distinct model folders, all published ones"
    )
    assert switched - started > 2 * POLL_SECS  # the slow publish spanned several polls
    assert noticed >= 0 and log.count(f"loading: {model}:2") == 1 and "failed to load" not in log
    # noticed within a sync and two poll periods; answering after the load of one small Python model
    assert noticed <= SYNC_SECS + 2 * POLL_SECS + 1
    assert seconds <= SYNC_SECS + 2 * POLL_SECS + 10  # a Python stub starts in 2-6 s on a busy 2-core machine
    assert {tuple(ids) for _, _, ids in traffic.answers} == {tuple(traffic.answers[0][2])}
    wanted = {"1": "UNAVAILABLE", "2": "READY"}  # once the old version has finished its unload
    wait_until(lambda: _index_versions(server, model) == wanted, 20, lambda: f"versions {_index_versions(server, model)}")


def test_object_store_outage_leaves_the_served_models_serving(tmp_path, monkeypatch):
    """The object store goes away (its process stopped) under traffic. A
    server on the synced folder answers every request and the sync reports
    the outage; the same server polling s3:// itself, measured beside it,
    unloads the model (Triton 2.51 counts an unlistable repository as an
    empty one): the reason the server polls a local folder. (That server's
    S3 client tries once here, AWS_MAX_ATTEMPTS=1 in standard retry mode; by default it retries for
    about 30 s, then unloads the same way.)"""
    store = MotoServer(tmp_path / "moto.log").start()
    direct = None
    try:
        store.create_bucket(BUCKET)
        url = store.url(BUCKET, "outage")
        published = publish(url, MODEL_REPOSITORY, ["text2ids"])
        with served_by_sync(url, tmp_path / "served") as (sync, server):
            with monkeypatch.context() as patched:
                patched.setenv("AWS_MAX_ATTEMPTS", "1")
                patched.setenv("AWS_RETRY_MODE", "standard")  # the C++ SDK's legacy mode ignores the count
                direct = TritonServer(repositories=[published["url"]], poll_secs=POLL_SECS, log_path=tmp_path / "direct.log").start(timeout=300)
            with Traffic(server, "text2ids") as traffic:
                time.sleep(1.0)
                store.process.terminate()
                store.process.wait(10)
                down = time.monotonic()
                wait_until(lambda: len(sync.errors) >= 2, 30, "the sync never noticed the outage")
                wait_until(lambda: requests.post(f"http://{direct.http_url}/v2/models/text2ids/infer", json=PAYLOAD, timeout=10).status_code != 200, 60)
                time.sleep(3 * POLL_SECS)
            served = sum(1 for t, _, _ in traffic.answers if t > down)
            assert not traffic.failures, traffic.failures[:3]
            assert served > 0 and server.is_ready() and sync.snapshot == published["snapshot"]
            print(f"\nobject store down {time.monotonic() - down:.0f} s: {served} requests answered from the synced folder, 0 failed; "
                  f"sync errors: {len(sync.errors)}; tritonserver polling s3:// itself unloaded text2ids")
            assert "successfully unloaded 'text2ids'" in (tmp_path / "direct.log").read_text(errors="replace")
    finally:
        if direct is not None:
            direct.stop()
        store.stop()


def _launcher(url: str, tmp_path: Path) -> Launcher:
    """`make serve MODEL_REPOSITORY=url REPOSITORY_POLL_SECS=2`: the Makefile's
    launcher command with free ports, its temporary files in tmp_path/tmp."""
    ports = free_port(), free_port(), free_port()
    args = with_flags(make_serve().args, model_repository=url, repository_poll_secs=str(POLL_SECS), http_port=str(ports[0]), grpc_port=str(ports[1]), metrics_port=str(ports[2]))
    keys = {name: secrets.token_urlsafe(24) for name in ("ADMIN_KEY", "STATS_KEY")}
    return Launcher(None, env={"TMPDIR": str(tmp_path / "tmp"), **keys}, args=args, ports=ports)


def _version_answering(launcher: Launcher) -> str | None:
    reply = requests.post(f"http://{launcher.http_url}/v2/models/text2ids/infer", json=PAYLOAD, timeout=10)
    return reply.json()["model_version"] if reply.ok else None


def test_make_serve_follows_a_published_root(tmp_path):
    """The launcher on a published root syncs it into a temporary folder and
    polls that: a second publish (text2ids gains a version 2) is served
    without a restart, an outage of the store under traffic loses no request,
    SIGTERM drains and stops the sync with the server, and the synced folder
    is gone. An unreachable store, or one where nothing was published, stops
    the start with a clear error."""
    (tmp_path / "tmp").mkdir()
    store = MotoServer(tmp_path / "moto.log").start()
    launcher = None
    try:
        store.create_bucket(BUCKET)
        url = store.url(BUCKET, "root")
        for where, message in ((f"s3://127.0.0.1:{free_port()}/{BUCKET}/root", "endpoint unreachable"), (url, "nothing published at")):
            failed = _launcher(where, tmp_path)
            assert failed.process.wait(60) == 1 and f"cannot serve {where}: " in failed.output and message in failed.output, failed.output
        staged = tmp_path / "repo"
        shutil.copytree(MODEL_REPOSITORY / "text2ids", staged / "text2ids", ignore=shutil.ignore_patterns("__pycache__"))
        first = publish(url, staged, log=lambda line: None)
        launcher = _launcher(url, tmp_path)
        launcher.wait_for("Ctrl-C stops the server", timeout=300)
        synced = Path(launcher.lines[launcher.wait_for(f"following {url} (snapshot {first['snapshot']}) in ")].split(" in ", 1)[1].split(",")[0])
        assert synced.is_relative_to(tmp_path / "tmp") and _version_answering(launcher) == "1"

        shutil.copytree(staged / "text2ids" / "1", staged / "text2ids" / "2")
        with open(staged / "text2ids" / "2" / "model.py", "a") as code:
            code.write("# version 2\n")
        second = publish(url, staged, log=lambda line: None)
        published = time.monotonic()
        wait_until(lambda: _version_answering(launcher) == "2", 4 * POLL_SECS + 30, lambda: launcher.output[-2000:])
        picked_up = time.monotonic() - published
        launcher.wait_for(f"serves snapshot {second['snapshot']}")
        launcher.wait_for("poll: 'text2ids' serves version 2")

        with Traffic(launcher, "text2ids") as traffic:
            store.process.terminate()
            store.process.wait(10)
            down = time.monotonic()
            launcher.wait_for(f"keeps serving snapshot {second['snapshot']}", timeout=30)
            time.sleep(3 * POLL_SECS)
        assert not traffic.failures and sum(t > down for t, _, _ in traffic.answers) > 0, traffic.failures[:3]
        assert {version for _, version, _ in traffic.answers} == {"2"}
        print(f"\nversion 2 answering {picked_up:.1f} s after the publish (sync and poll every {POLL_SECS} s); store down "
              f"{time.monotonic() - down:.0f} s: {sum(t > down for t, _, _ in traffic.answers)} requests answered, 0 failed")
        # the sync wrote each model.py's bytecode: a stub writing it into the served
        # folder would have made the next poll load the model again
        loads = [line for line in launcher.lines if "loading: text2ids" in line or "repository sync" in line or "poll:" in line]
        assert "loading: text2ids:1" not in launcher.output and launcher.output.count("loading: text2ids:2") == 1, loads

        server_pid = launcher.server_pid()
        assert launcher.stop(signal.SIGTERM) == 0, launcher.output[-3000:]
        launcher.wait_for("tritonserver stopped (exit code 0)")
        assert not synced.parent.exists() and not list((tmp_path / "tmp").glob("triton-sync-*"))
        assert not Path(f"/proc/{server_pid}").exists()
    finally:
        if launcher is not None and launcher.process.poll() is None:
            launcher.stop(timeout=60)
        store.stop()


def test_missing_bucket_is_a_clear_error_not_a_hang(s3, tmp_path):
    started = time.monotonic()
    with pytest.raises(ServerStartError, match="bucket 'no-such-bucket' does not exist"):
        TritonServer(repositories=[s3.url("no-such-bucket", "repo")]).start(timeout=60)
    with pytest.raises(ServerStartError, match="is empty: publish it first"):
        TritonServer(repositories=[s3.url(BUCKET, "nothing-here")]).start(timeout=60)
    s3_client(parse_s3_url(s3.url(BUCKET, ""))).put_object(Bucket=BUCKET, Key="by-hand/text2ids/config.pbtxt", Body=b"")
    with pytest.raises(ServerStartError, match=f"holds no {POINTER}: it was not published by `make publish"):
        TritonServer(repositories=[s3.url(BUCKET, "by-hand")]).start(timeout=60)
    with pytest.raises(StorageError, match=f"nothing published at .*no {POINTER}"):
        RepositorySync(s3.url(BUCKET, "by-hand"), tmp_path / "served").sync_once()
    # a published root moves: the server is told to follow it through the sync
    repository = tmp_path / "repo"
    shutil.copytree(MODEL_REPOSITORY / "text2ids", repository / "text2ids", ignore=shutil.ignore_patterns("__pycache__"))
    published = publish(s3.url(BUCKET, "root"), repository, log=lambda line: None)
    with pytest.raises(ServerStartError, match=rf"is a published repository .* runtime.repository_sync .* serve the snapshot {published['url']}"):
        TritonServer(repositories=[s3.url(BUCKET, "root")]).start(timeout=60)
    assert time.monotonic() - started < 30


def test_wrong_credentials_are_a_clear_error_not_a_hang(tmp_path):
    guarded = MotoServer(tmp_path / "moto.log", enforce_auth=True).start()
    try:
        started = time.monotonic()
        with pytest.raises(ServerStartError, match="access refused .* check AWS_ACCESS_KEY_ID"):
            TritonServer(repositories=[guarded.url(BUCKET, "repo")]).start(timeout=60)
        assert time.monotonic() - started < 30
    finally:
        guarded.stop()


def test_server_environment_without_the_serving_package_is_named(tmp_path):
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "python3").symlink_to(sys._base_executable)  # the interpreter without this venv's packages
    env = {"PATH": f"{bare}:/usr/bin:/bin"}
    with pytest.raises(ServerStartError, match=r"import the serving package `pipelines`.*pip install \."):
        check_serving_package(env, "s3://host:9000/bucket/repo")
    check_serving_package({"PATH": f"{sys.executable.rsplit('/', 1)[0]}:/usr/bin"}, "s3://host:9000/bucket/repo")


def test_remote_urls_reach_the_server_unchanged():
    """pathlib would turn s3:// into s3:/ (the server then fails with `failed to stat file s3:/...`)."""
    urls = ["s3://127.0.0.1:9000/bucket/repo", "gs://bucket/repo", "as://account/container/repo"]
    command = TritonServer(repositories=urls, poll_secs=30).command(Path("/backends"), Path("tritonserver"))
    assert [a for a in command if a.startswith("--model-repository=")] == [f"--model-repository={u}" for u in urls]
    assert "--model-control-mode=poll" in command and "--repository-poll-secs=30" in command
    assert "--model-control-mode=poll" not in TritonServer(repositories=urls[:1]).command(Path("/b"), Path("t"))


def test_the_launcher_follows_published_roots_and_serves_snapshots_as_they_are():
    assert is_published_root("s3://127.0.0.1:9000/bucket/root") and is_published_root("s3://bucket/root/")
    assert not is_published_root("s3://bucket/root/snapshots/20261206T091502.026359Z-4402a6d6/")
    assert not is_published_root("gs://bucket/root") and not is_published_root(Path("/srv/models/repository"))
