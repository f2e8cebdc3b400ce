"""A real S3 API on loopback for the tests: moto's server mode (its own
process, HTTP on a free port), with the AWS_* variables that boto3 and
tritonserver read set for the duration; a publisher's client slowed down on
purpose; a watcher of what a served local repository holds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import boto3

from runtime.remote_repository import parse_s3_url, s3_client
from runtime.server import free_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "pipelines-test", "AWS_SECRET_ACCESS_KEY": "pipelines-test-secret", "AWS_DEFAULT_REGION": "us-east-1"}


class MotoServer:
    def __init__(self, log_path: Path, enforce_auth: bool = False):
        self.port = free_port()
        self.log_path = log_path
        self.enforce_auth = enforce_auth
        self.process = None
        self._saved = {}

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, bucket: str, prefix: str) -> str:
        """tritonserver's syntax for an S3-compatible endpoint."""
        return f"s3://{self.endpoint}/{bucket}/{prefix}"

    def start(self) -> "MotoServer":
        env = dict(os.environ)
        if self.enforce_auth:
            # every request is checked against moto's IAM, where no key exists
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
        moto = Path(sys.executable).parent / "moto_server"
        self.process = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
            env=env,
            stdout=open(self.log_path, "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited: {self.log_path.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"http://{self.endpoint}/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        else:
            self.stop()
            raise RuntimeError("moto_server did not answer within 60 s")
        for name, value in CREDENTIALS.items():
            self._saved[name] = os.environ.get(name)
            os.environ[name] = value
        return self

    def create_bucket(self, bucket: str) -> None:
        boto3.client("s3", endpoint_url=f"http://{self.endpoint}").create_bucket(Bucket=bucket)

    def stop(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved = {}
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# every request that writes an object's bytes (single PUT, multipart part, server-side copy)
WRITES = ("PutObject", "UploadPart", "CopyObject", "UploadPartCopy", "CompleteMultipartUpload")


def slowed_client(url: str, seconds: float):
    """An S3 client for publish() whose every write waits `seconds` first:
    a publish that takes long enough for several polls to look at it."""
    client = s3_client(parse_s3_url(url))
    for operation in WRITES:
        client.meta.events.register(f"before-send.s3.{operation}", lambda **_: time.sleep(seconds))
    return client


class RepositoryWatcher:
    """Looks at every model folder of a served local repository every few
    milliseconds, as tritonserver would, and records each distinct state it
    finds: (model, frozenset of (path, size)). A link is resolved once per
    look; a look counts when the link still leads to the same folder after
    it (the sync removes a folder only once no link leads to it)."""

    def __init__(self, repository: Path, every: float = 0.01):
        self.repository = repository
        self.every = every
        self.seen: set[tuple[str, frozenset]] = set()
        self.looks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _look(self) -> None:
        for link in list(self.repository.iterdir()):
            folder = Path(os.path.realpath(link))
            files = frozenset(
                (path.relative_to(folder).as_posix(), path.stat().st_size)
                for path in folder.rglob("*")
                if path.is_file() and "__pycache__" not in path.parts
            )
            if os.path.realpath(link) == str(folder):
                self.seen.add((link.name, files))
        self.looks += 1

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self._look()
            except FileNotFoundError:  # a folder removed while we walked it
                continue

    def __enter__(self) -> "RepositoryWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)


def manifest_states(manifest: dict) -> set[tuple[str, frozenset]]:
    """The (model, files) states of a published manifest, as RepositoryWatcher records them."""
    return {(model, frozenset((path, meta["size"]) for path, meta in entry["files"].items())) for model, entry in manifest["models"].items()}
