"""A real S3 API on loopback for the tests: moto's server mode (its own
process, HTTP on a free port), with the AWS_* variables that boto3 and
tritonserver read set for the duration."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

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
        import boto3

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
