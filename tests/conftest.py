"""Shared fixtures: one real tritonserver per test session, on free ports,
serving the project's repository plus tests/model_repository (test-only
models); and the same repositories served in this process (tests/inprocess.py)
for the tests of the serving glue and the models' code."""

from __future__ import annotations

import signal

import pytest

from runtime.paths import MODEL_REPOSITORY, TEST_REPOSITORY
from runtime.server import TritonServer


def _interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_sessionstart(session):
    # SIGTERM (a CI timeout, `kill`) ends the run like Ctrl-C, so the session's
    # teardown stops its tritonservers instead of orphaning them
    signal.signal(signal.SIGTERM, _interrupted)


@pytest.fixture(scope="session")
def triton():
    server = TritonServer(repositories=[MODEL_REPOSITORY, TEST_REPOSITORY])
    server.start(timeout=600)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def http_client(triton):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(triton.http_url, concurrency=16, network_timeout=300)
    yield client
    client.close()


@pytest.fixture(scope="session")
def grpc_client(triton):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(triton.grpc_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def inprocess():
    from inprocess import InProcessServer

    return InProcessServer([MODEL_REPOSITORY, TEST_REPOSITORY])


@pytest.fixture(scope="session")
def ui_page(triton):
    """The web page (`python -m ui`, as make ui runs it) against the session's server."""
    from ui_helpers import UiProcess

    with UiProcess(triton.grpc_url, f"http://localhost:{triton.metrics_port}/metrics") as page:
        yield page
