"""Small helpers the integration tests share (request building, statistics)."""

from __future__ import annotations

from pipelines.client import make_inputs, make_outputs  # noqa: F401  (re-exported for the tests)


def model_counts(http_client, model: str) -> tuple[int, int]:
    """(inference_count, execution_count) of a model's latest version."""
    stats = http_client.get_inference_statistics(model_name=model)["model_stats"]
    entry = stats[0]
    return int(entry.get("inference_count", 0)), int(entry.get("execution_count", 0))


def settled_counts(http_client, model: str, quiet: float = 0.3, timeout: float = 10.0) -> tuple[int, int]:
    """model_counts once they stop changing for `quiet` seconds: statistics of
    requests answered just before (an earlier test's) can still be arriving."""
    import time

    deadline = time.monotonic() + timeout
    last = model_counts(http_client, model)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = model_counts(http_client, model)
        if now == last:
            return now
        last = now
    return last


def counts_since(http_client, model: str, before: tuple[int, int], expected: int, timeout: float = 10.0) -> tuple[int, int]:
    """(inferences, executions) of `model` since `before`, polled until the
    inferences reach `expected`: the server records statistics after it has
    sent the responses, so the last executions can lag behind the answers."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        now = model_counts(http_client, model)
        delta = (now[0] - before[0], now[1] - before[1])
        if delta[0] >= expected or time.monotonic() > deadline:
            return delta
        time.sleep(0.05)


def grpc_fire_all(client, model: str, requests: list, timeout: float = 120.0) -> list[tuple]:
    """Send every request at once (gRPC async) and return, in request order,
    (result, error, seconds until the answer) per request."""
    import queue
    import time

    done = queue.Queue()
    started = time.monotonic()
    for index, inputs in enumerate(requests):

        def callback(result, error, index=index):
            done.put((index, result, error, time.monotonic() - started))

        client.async_infer(model, inputs, callback)
    answers = [None] * len(requests)
    for _ in requests:
        index, result, error, seconds = done.get(timeout=timeout)
        answers[index] = (result, error, seconds)
    return answers
