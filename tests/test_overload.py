"""Overload and timeouts: a request never waits without limit.

- A queue timeout (REJECT) refuses a request that waited too long in the
  queue (timeout_probe: 0.3 s per request, 1 s queue timeout).
- A BLS call carries a timeout, so a saturated downstream model fails the
  calling request instead of hanging it (bls_timeout_probe -> timeout_probe,
  0.3 s).
- A flood at several times an entry model's measured capacity: every
  request is answered or refused, none hangs, and the health endpoint keeps
  answering at once meanwhile."""

from __future__ import annotations

import queue
import threading
import time
import urllib.request

import numpy as np
import tritonclient.grpc as grpcclient
from triton_helpers import grpc_fire_all, make_inputs

from perf.soak import REFUSALS
from testsets.entries import entries

TIMEOUT_S = 1.0  # timeout_probe's default_timeout_microseconds
EXECUTE_S = 0.3  # timeout_probe's execute_delay_s
BLS_TIMEOUT_S = 0.3  # bls_timeout_probe's bls_timeout_microseconds


def burst(count: int) -> tuple[list, list[np.ndarray]]:
    samples = [np.full((1, 3), i, dtype=np.float32) for i in range(count)]
    return [make_inputs(grpcclient, {"x": x}) for x in samples], samples


def test_queue_timeout_refuses_what_waited_too_long(grpc_client):
    requests, samples = burst(12)
    answers = grpc_fire_all(grpc_client, "timeout_probe", requests, timeout=60)
    served = [i for i, (_, error, _) in enumerate(answers) if error is None]
    refused = [(str(error), seconds) for _, error, seconds in answers if error is not None]
    assert served and refused, (served, refused)
    for i in served:
        np.testing.assert_array_equal(answers[i][0].as_numpy("y"), samples[i])
    for message, seconds in refused:
        assert "Request timeout expired" in message, message
        # checked when an execute ends: at most one execute past the timeout
        assert seconds < TIMEOUT_S + 2 * EXECUTE_S + 0.5, f"refused after {seconds:.2f} s"
    assert max(s for _, _, s in answers) < TIMEOUT_S + 2 * EXECUTE_S + 0.5


def test_client_can_shorten_the_queue_timeout(grpc_client):
    done = queue.Queue()
    for i in range(6):
        inputs = make_inputs(grpcclient, {"x": np.full((1, 3), i, np.float32)})
        grpc_client.async_infer("timeout_probe", inputs, lambda result, error: done.put(error), timeout=400_000)
    errors = [done.get(timeout=30) for _ in range(6)]
    assert sum(e is not None and "Request timeout expired" in str(e) for e in errors) >= 3, [str(e) for e in errors]


def test_bls_call_timeout_fails_the_request_instead_of_hanging(grpc_client):
    requests, samples = burst(12)
    answers = grpc_fire_all(grpc_client, "bls_timeout_probe", requests, timeout=60)
    failed = [str(error) for _, error, _ in answers if error is not None]
    assert failed, "every call was served: timeout_probe was not saturated"
    for message in failed:
        assert "timeout_probe" in message and "Request timeout expired" in message, message
    for i, (result, error, _) in enumerate(answers):
        if error is None:
            np.testing.assert_array_equal(result.as_numpy("y"), samples[i])
    # the calls waited at most 0.3 s (not timeout_probe's own 1 s): at most
    # four were served, the execute ended within the timeout plus two calls
    assert len(failed) >= 8, f"{12 - len(failed)} served"
    assert max(s for _, _, s in answers) < 0.1 + BLS_TIMEOUT_S + 2 * EXECUTE_S + 1.0
    # and the model serves again once the downstream model is free
    one = grpc_client.infer("bls_timeout_probe", burst(1)[0][0])
    np.testing.assert_array_equal(one.as_numpy("y"), samples[0])


def watch_health(url: str, stop: threading.Event, seconds: list[float]) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            with urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=5) as response:
                ok = response.status == 200
        except OSError:
            ok = False
        seconds.append(time.monotonic() - started if ok else float("inf"))
        time.sleep(0.2)


def test_flood_at_several_times_capacity(triton, grpc_client):
    model = "vit"
    entry = entries()[model]
    pool = [make_inputs(grpcclient, entry.good(i)) for i in range(4)]
    # capacity: a concurrent burst of 32, measured
    started = time.monotonic()
    assert all(e is None for _, e, _ in grpc_fire_all(grpc_client, model, [pool[i % 4] for i in range(32)], timeout=300))
    capacity = 32 / (time.monotonic() - started)
    rate, flood_s = 4 * capacity, 6.0
    count = int(rate * flood_s)
    stop, health = threading.Event(), []
    watcher = threading.Thread(target=watch_health, args=(triton.http_url, stop, health), daemon=True)
    watcher.start()
    done = queue.Queue()
    began = time.monotonic()
    for i in range(count):
        sent = time.monotonic()
        grpc_client.async_infer(model, pool[i % 4], lambda result, error, sent=sent: done.put((error, time.monotonic() - sent)))
        time.sleep(max(0.0, began + (i + 1) / rate - time.monotonic()))
    outcomes = []
    for _ in range(count):
        outcomes.append(done.get(timeout=120))  # none hangs
    stop.set()
    watcher.join(10)
    answered = [s for e, s in outcomes if e is None]
    refused = [(str(e), s) for e, s in outcomes if e is not None]
    print(f"\n{model}: capacity {capacity:.1f}/s, flood {count} requests at {rate:.1f}/s: {len(answered)} answered "
          f"(slowest {max(answered, default=0):.1f} s), {len(refused)} refused; health slowest {max(health):.2f} s of {len(health)}")
    for message, _ in refused:
        assert any(r in message for r in REFUSALS), message
    assert health and max(health) < 1.0, f"health check took {max(health):.2f} s during the flood"
    assert max(s for _, s in outcomes) < 60.0
    # and it answers normally afterwards
    assert grpc_client.infer(model, pool[0]).as_numpy("last_hidden_state") is not None
