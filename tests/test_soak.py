"""A short soak in the test run (`make soak` is the long one): mixed traffic
over every entry model, HTTP and gRPC, with bad inputs, against the
session's server, meeting the soak's targets. Two differ from `make soak`:
the shared memory left after a shutdown is measured there (it stops its own
server), and RSS may grow by 25% here, not 10%: a minute from a cold server
is mostly warm-up (ONNX Runtime arenas, torch and the shared-memory regions
grow to the largest batch seen)."""

from __future__ import annotations

import os

from perf.soak import run_soak

MINUTES = float(os.environ.get("SOAK_TEST_MINUTES") or 0.75)


def test_short_soak_meets_the_targets(triton):
    result = run_soak(MINUTES, concurrency=6, bad_fraction=0.05, sample_s=1.0, server=triton)
    summary = {name: text for name, (ok, text) in result.targets(rss_limit=0.25).items()}
    print(f"\nsoak: {result.requests} requests in {result.wall_s:.0f} s: {summary}")
    assert result.requests >= 40, summary
    assert sum(t.bad_refused for t in result.tally.values()) > 0, "no bad input was sent"
    assert result.passed(rss_limit=0.25), (summary, result.examples)
