"""Client-side helpers shared by clients/, perf suites and tests: one way to
connect over HTTP or gRPC, one set of connection options, and request
tensors for either protocol."""

from __future__ import annotations

import argparse
import json
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

WIRE_TYPES = {
    np.dtype(np.float32): "FP32",
    np.dtype(np.float16): "FP16",
    np.dtype(np.float64): "FP64",
    np.dtype(np.int64): "INT64",
    np.dtype(np.int32): "INT32",
    np.dtype(np.int8): "INT8",
    np.dtype(np.uint8): "UINT8",
    np.dtype(np.bool_): "BOOL",
    np.dtype(np.object_): "BYTES",
}

DEFAULT_URLS = {"http": "localhost:8000", "grpc": "localhost:8001"}
GRPC_SERVICE = "inference.GRPCInferenceService"
RETRIED_METHODS = ("ModelInfer", "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata")
"""The open calls: a call that ends UNAVAILABLE (a replica gone mid-request, a
draining server's "server is stopping") is tried again, behind a balancer on
another replica. The locked admin and statistics calls are not in the list:
Triton refuses one without its key as UNAVAILABLE too, and a retry would only
be refused again (docs/operations.md)."""
GRPC_RETRY_CHANNEL_ARGS = [
    ("grpc.enable_retries", 1),
    (
        "grpc.service_config",
        json.dumps(
            {
                "methodConfig": [
                    {
                        "name": [{"service": GRPC_SERVICE, "method": method} for method in RETRIED_METHODS],
                        "retryPolicy": {
                            "maxAttempts": 3,
                            "initialBackoff": "0.1s",
                            "maxBackoff": "1s",
                            "backoffMultiplier": 2,
                            "retryableStatusCodes": ["UNAVAILABLE"],
                        },
                    }
                ]
            }
        ),
    ),
]
"""tritonclient.grpc.InferenceServerClient(url, channel_args=GRPC_RETRY_CHANNEL_ARGS):
up to 3 attempts of an open call that ends UNAVAILABLE; `connect` uses it."""
PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def protocol_module(protocol: str):
    # only the protocol used is imported: the other pulls its own stack (gevent, grpc)
    if protocol == "http":
        import tritonclient.http as module  # gevent's stack
    elif protocol == "grpc":
        import tritonclient.grpc as module  # grpcio's stack
    else:
        raise ValueError(f"protocol must be 'http' or 'grpc', not {protocol!r}")
    return module


@dataclass(frozen=True)
class Tls:
    """TLS for the connection: the CA file that signed the server's
    certificate (None: the system's CAs), and a client certificate chain and
    key for mutual TLS. Over HTTP it is for a TLS-terminating proxy in front
    of Triton (Triton's HTTP endpoint has no TLS)."""

    root_certificates: str | None = None
    private_key: str | None = None
    certificate_chain: str | None = None

    def http_context_factory(self):
        import gevent.ssl  # with tritonclient.http only, as in protocol_module

        def factory():
            context = gevent.ssl.create_default_context(cafile=self.root_certificates)
            if self.certificate_chain:
                context.load_cert_chain(self.certificate_chain, self.private_key)
            return context

        return factory


def connect(url: str | None = None, protocol: str = "http", concurrency: int = 1, tls: Tls | None = None):
    """(tritonclient module, client) for the protocol; url defaults to localhost."""
    module = protocol_module(protocol)
    url = url or DEFAULT_URLS[protocol]
    if protocol == "http":
        options = {"ssl": True, "ssl_context_factory": tls.http_context_factory()} if tls else {}
        return module, module.InferenceServerClient(url, concurrency=concurrency, network_timeout=600, **options)
    if tls:
        return module, module.InferenceServerClient(
            url,
            ssl=True,
            root_certificates=tls.root_certificates,
            private_key=tls.private_key,
            certificate_chain=tls.certificate_chain,
            channel_args=GRPC_RETRY_CHANNEL_ARGS,
        )
    return module, module.InferenceServerClient(url, channel_args=GRPC_RETRY_CHANNEL_ARGS)


def tls_from_args(args) -> Tls | None:
    """The Tls the --ssl options ask for, or None."""
    if not getattr(args, "ssl", False):
        return None
    return Tls(args.root_certificates, args.private_key, args.certificate_chain)


def add_connection_arguments(parser, subcommands=()) -> None:
    """The connection options every client takes (--url, --protocol, and TLS:
    --ssl, --root-certificates, --private-key, --certificate-chain); with
    subcommands, accepted before the subcommand and after it alike."""
    _connection_options(parser, None)
    for sub in subcommands:  # SUPPRESS: a value given before the subcommand is kept
        _connection_options(sub, argparse.SUPPRESS)


def _connection_options(parser, default) -> None:
    def given(value):
        return argparse.SUPPRESS if default is argparse.SUPPRESS else value

    parser.add_argument("--url", default=given(None), help="default localhost:8000 (http) / localhost:8001 (grpc)")
    parser.add_argument("--protocol", choices=["http", "grpc"], default=given("http"))
    parser.add_argument("--ssl", action="store_true", default=given(False), help="TLS (gRPC: Triton's own; HTTP: a TLS-terminating proxy)")
    parser.add_argument("--root-certificates", metavar="PEM", default=given(None), help="CA file that signed the server's certificate")
    parser.add_argument("--private-key", metavar="PEM", default=given(None), help="client key, for mutual TLS")
    parser.add_argument("--certificate-chain", metavar="PEM", default=given(None), help="client certificate, for mutual TLS")


def make_inputs(module, tensors: dict[str, np.ndarray], binary: bool = True) -> list:
    """InferInput objects of tritonclient.http or .grpc for named arrays."""
    inputs = []
    for name, array in tensors.items():
        item = module.InferInput(name, list(array.shape), WIRE_TYPES[array.dtype])
        if module.__name__.endswith("http"):
            # Triton's JSON encoding has no FP16: those always go binary
            item.set_data_from_numpy(array, binary_data=binary or array.dtype == np.float16)
        else:
            item.set_data_from_numpy(array)
        inputs.append(item)
    return inputs


def make_outputs(module, names, binary: bool = True) -> list:
    if module.__name__.endswith("http"):
        return [module.InferRequestedOutput(name, binary_data=binary) for name in names]
    return [module.InferRequestedOutput(name) for name in names]


def encoded_bytes_tensor(data: bytes) -> np.ndarray:
    """File bytes as the UINT8 [-1] tensor the image pipelines take."""
    return np.frombuffer(data, dtype=np.uint8)


def picture_request(picture: Path | str | bytes) -> dict[str, np.ndarray]:
    """A picture file (path) or its bytes as the image pipelines' request:
    `input_image` UINT8 [1, N], one encoded picture."""
    data = picture if isinstance(picture, bytes) else Path(picture).read_bytes()
    return {"input_image": encoded_bytes_tensor(data)[None]}


def picture_files(paths: Iterable[Path | str], recursive: bool = True) -> list[Path]:
    """Files as given; folders replaced by their picture files (by extension), sorted."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            listing = path.rglob("*") if recursive else path.iterdir()
            files += sorted(p for p in listing if p.is_file() and p.suffix.lower() in PICTURE_SUFFIXES)
        else:
            files.append(path)
    return files


def error_message(error: BaseException) -> str:
    """The server's own message for a refused request, else the exception's text."""
    message = getattr(error, "message", None)
    return message() if callable(message) else str(error)


def infer_each(
    client,
    module,
    model: str,
    items: Iterable,
    make_request: Callable[[object], dict[str, np.ndarray]],
    output_names: Sequence[str],
    concurrency: int = 1,
) -> Iterator[tuple[int, dict[str, np.ndarray] | None, str | None]]:
    """One request per item, at most `concurrency` in flight; yields, in item
    order, (index, {output name: array}, None) or (index, None, error message).

    `make_request(item)` builds the input tensors; it runs only when the item is
    sent, so files are read one window at a time, and its OSError or ValueError
    becomes that item's error. A request the server refuses is that item's
    error (the server's message); the other items go on. With HTTP, give the
    client a pool of at least `concurrency` (`connect(..., concurrency=N)`)."""
    outputs = make_outputs(module, output_names)
    window: deque = deque()  # (index, wait for the answer or None, problem found before sending)
    for index, item in enumerate(items):
        try:
            window.append((index, _send(client, module, model, make_inputs(module, make_request(item)), outputs), None))
        except (OSError, ValueError) as error:
            window.append((index, None, str(error)))
        # waiting for the oldest keeps answers in item order and memory bounded
        while len(window) >= max(concurrency, 1):
            yield _collect(*window.popleft(), output_names)
    while window:
        yield _collect(*window.popleft(), output_names)


def _send(client, module, model: str, inputs: list, outputs: list) -> Callable[[], object]:
    """Start one request; returns a function that waits for its result (raising the server's error)."""
    if module.__name__.endswith("http"):
        # the HTTP client is not thread-safe: async_infer runs on its own greenlet pool
        return client.async_infer(model, inputs, outputs=outputs).get_result
    answer: Future = Future()

    def done(result, error):  # called on one of the gRPC client's threads
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(result)

    client.async_infer(model, inputs, done, outputs=outputs)
    return answer.result


def _collect(index: int, wait: Callable[[], object] | None, problem: str | None, output_names: Sequence[str]):
    if wait is None:
        return index, None, problem
    try:
        result = wait()
    except Exception as error:  # the server refused this item: report it, go on with the others
        return index, None, error_message(error)
    return index, {name: result.as_numpy(name) for name in output_names}, None
