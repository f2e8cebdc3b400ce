"""Where the page's requests go, the clients that send them, and what a
person reads when one fails.

The page holds no key: inference, health and metadata are open APIs, and the
server tab reads the metrics endpoint. Every request is built by a client of
clients/; the clients are kept one per worker thread (tritonclient's HTTP
client is not thread-safe; Gradio runs handlers on a thread pool)."""

from __future__ import annotations

import logging
import threading
import urllib.error
from dataclasses import dataclass
from typing import Callable, TypeVar

from clients.common import Tls, connect, error_message

LOG = logging.getLogger("ui")
T = TypeVar("T")


@dataclass(frozen=True)
class Backend:
    """Triton as the page sees it: the clients' endpoint (`url`, `protocol`,
    `tls`, as their --url/--protocol/--ssl options) and the metrics page."""

    url: str
    protocol: str = "grpc"
    tls: Tls | None = None
    metrics_url: str = "http://localhost:8002/metrics"


class UserError(Exception):
    """A message for the page: what went wrong, in words, without a traceback."""


class Clients:
    """One client of each kind per thread, made on first use."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self._local = threading.local()

    def get(self, key: str, make: Callable[[Backend], T]) -> T:
        made = self._local.__dict__.setdefault("clients", {})
        if key not in made:
            made[key] = make(self.backend)
        return made[key]

    def raw(self):
        """(tritonclient module, client) for health and metadata calls."""
        return self.get("raw", lambda b: connect(b.url, b.protocol, tls=b.tls))


METRICS = "metrics"  # what `call` names a read of the metrics page
# Triton's words for the failures a person can act on, and what the page says instead
QUEUE_FULL = ("Exceeds maximum queue size", "queue is full")
UNREACHABLE = ("failed to connect", "Connection refused", "connection refused", "StatusCode.UNAVAILABLE", "Name or service not known", "timed out")


def readable(error: BaseException, backend: Backend, model: str) -> str:
    """The message the page shows for a failed call to `model`."""
    if isinstance(error, UserError):
        return str(error)
    text = error_message(error) if hasattr(error, "message") else str(error)
    if any(fragment in text for fragment in QUEUE_FULL):
        return f"The server is busy: the queue of `{model}` is full. Try again in a moment."
    if isinstance(error, (ConnectionError, urllib.error.URLError)) or any(fragment in text for fragment in UNREACHABLE):
        where = f"Triton's metrics are not reachable at {backend.metrics_url}" if model == METRICS else f"Triton is not reachable at {backend.url} ({backend.protocol})"
        return f"{where}. Is the server running (`make serve`)?"
    if "is not ready" in text or "unknown model" in text or "not found" in text:
        return f"The model `{model}` is not available on the server: {text}"
    if type(error).__name__ == "InferenceServerException" or isinstance(error, ValueError):
        return f"`{model}` refused the request: {text}"
    return f"`{model}` failed ({type(error).__name__}); the UI's log has the details."


def failure(error: BaseException, backend: Backend, model: str) -> UserError:
    """The UserError for `error`, which is logged here in full (the page shows the message only)."""
    if isinstance(error, UserError):
        return error
    message = readable(error, backend, model)
    if type(error).__name__ == "InferenceServerException":  # the server's own words say it all
        LOG.warning("%s: %s (server: %s)", model, message, error_message(error))
    else:
        LOG.warning("%s: %s", model, message, exc_info=error)
    return UserError(message)


def call(model: str, backend: Backend, work: Callable[[], T]) -> T:
    """`work()`, a failure raised as `failure` makes it."""
    try:
        return work()
    except Exception as error:
        raise failure(error, backend, model) from error
