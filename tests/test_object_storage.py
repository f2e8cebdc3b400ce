"""The repository served from object storage, against a real S3 API on
loopback (moto's server mode): `make publish`'s uploader and its
verification, the whole exported repository served from `s3://` answering
like the local one, poll mode picking up a published version under traffic,
and clear, fast failures for wrong credentials, a missing bucket and a
server environment without the serving package."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from object_storage_helpers import MotoServer
from test_contracts import ENTRIES, outputs_of
from triton_helpers import wait_until

from deploy.object_storage import model_files, parse_s3_url, publish, s3_client
from runtime.paths import MODEL_REPOSITORY
from runtime.server import ServerStartError, TritonServer, check_serving_package

POLL_SECS = 5
POLLED_MODELS = ["text2ids", "datatypes", "datatypes_model1", "datatypes_model2"]
BUCKET = "models"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log").start()
    server.create_bucket(BUCKET)
    yield server
    server.stop()


@pytest.fixture
def remote(s3):
    """The whole exported repository, published, served from s3://."""
    url = s3.url(BUCKET, "pipelines/v1")
    started = time.monotonic()
    publish(url, MODEL_REPOSITORY)
    published = time.monotonic()
    server = TritonServer(repositories=[url])
    server.start(timeout=600)
    print(f"\npublish {published - started:.1f} s, serve from s3:// until READY {time.monotonic() - published:.1f} s")
    yield url, server
    server.stop()


@pytest.fixture
def polled(s3):
    """A few models from s3:// in poll mode. Each poll lists and stats every
    model folder (about ten requests a model), so the time between two looks
    is the poll period plus that walk: a small repository keeps it short."""
    url = s3.url(BUCKET, "pipelines/polled")
    publish(url, MODEL_REPOSITORY, POLLED_MODELS)
    with TritonServer(repositories=[url], poll_secs=POLL_SECS) as server:
        yield url, server


def test_parse_s3_urls():
    assert parse_s3_url("s3://bucket/a/b/") == parse_s3_url("s3://bucket/a/b")
    location = parse_s3_url("s3://127.0.0.1:9000/bucket/a/b")
    assert (location.bucket, location.prefix, location.endpoint_url) == ("bucket", "a/b", "http://127.0.0.1:9000")
    assert parse_s3_url("s3://https://minio.local:443/b").endpoint_url == "https://minio.local:443"
    assert parse_s3_url("s3://bucket").prefix == ""


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
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="publish-check/")["Contents"])
    assert keys == sorted(f"publish-check/{k}" for k in model_files(repository)) == [
        "publish-check/text2ids/1/model.py",
        "publish-check/text2ids/1/vocab.txt",
        "publish-check/text2ids/config.pbtxt",
    ]
    assert first["uploaded"] == 3
    # unchanged files are not sent again; a remote file that differs, or that
    # the local folder no longer has, is replaced / deleted
    client.put_object(Bucket=BUCKET, Key="publish-check/text2ids/1/vocab.txt", Body=b"tampered")
    client.put_object(Bucket=BUCKET, Key="publish-check/text2ids/2/stale.py", Body=b"")
    again = publish(url, repository)
    assert (again["uploaded"], again["deleted"]) == (1, 1)
    body = client.get_object(Bucket=BUCKET, Key="publish-check/text2ids/1/vocab.txt")["Body"].read()
    assert body == (repository / "text2ids" / "1" / "vocab.txt").read_bytes()


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


def test_poll_mode_loads_a_published_version_under_traffic(polled, tmp_path):
    url, server = polled
    model = "text2ids"
    staged = tmp_path / "repo"
    shutil.copytree(MODEL_REPOSITORY / model, staged / model, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(staged / model / "1", staged / model / "2")
    answers, failures, stop = [], [], threading.Event()
    payload = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hello object storage"]}]}

    def traffic():
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    reply = session.post(f"http://{server.http_url}/v2/models/{model}/infer", json=payload, timeout=30)
                    reply.raise_for_status()
                    body = reply.json()
                    answers.append((time.monotonic(), body["model_version"], body["outputs"][0]["data"]))
                except Exception as error:  # every failure counts
                    failures.append(repr(error))

    workers = [threading.Thread(target=traffic) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(1.0)
        publish(url, staged, [model])
        published, published_wall = time.monotonic(), time.time()
        while time.monotonic() - published < 10 * POLL_SECS and not any(v == "2" for t, v, _ in answers if t > published):
            time.sleep(0.05)
        time.sleep(1.0)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    first_v2 = min((t for t, v, _ in answers if v == "2"), default=None)
    assert not failures, failures[:3]
    assert first_v2 is not None, "version 2 never answered"
    seconds = first_v2 - published
    noticed = _load_started(server, f"loading: {model}:2") - published_wall
    print(f"\nversion 2 loading {noticed:.1f} s and answering {seconds:.1f} s after publish (poll {POLL_SECS} s), {len(answers)} requests, 0 failed")
    # noticed within two poll periods; answering after the load of one small Python model
    assert noticed <= 2 * POLL_SECS + 1
    assert seconds <= 2 * POLL_SECS + 10  # a Python stub starts in 2-6 s on a busy 2-core machine
    assert {tuple(ids) for _, _, ids in answers} == {tuple(answers[0][2])}
    wanted = {"1": "UNAVAILABLE", "2": "READY"}  # once the old version has finished its unload
    wait_until(lambda: _index_versions(server, model) == wanted, 20, lambda: f"versions {_index_versions(server, model)}")


def test_missing_bucket_is_a_clear_error_not_a_hang(s3):
    started = time.monotonic()
    with pytest.raises(ServerStartError, match="bucket 'no-such-bucket' does not exist"):
        TritonServer(repositories=[s3.url("no-such-bucket", "repo")]).start(timeout=60)
    with pytest.raises(ServerStartError, match="is empty: publish it first"):
        TritonServer(repositories=[s3.url(BUCKET, "nothing-here")]).start(timeout=60)
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
