"""A flooded model answers "queue full" at once; accepted requests all get
their own answers. queue_probe (tests/model_repository) takes 0.3 s per
execute, batches 2 and queues at most 3."""

from __future__ import annotations

import numpy as np
import tritonclient.grpc as grpcclient
from triton_helpers import grpc_fire_all, make_inputs


def test_flood_gets_clean_rejections_and_no_lost_answers(grpc_client):
    total = 24
    samples = [np.full((1, 3), i, dtype=np.float32) for i in range(total)]
    requests = [make_inputs(grpcclient, {"x": x}) for x in samples]
    accepted, rejected = {}, {}
    for index, (result, error, seconds) in enumerate(grpc_fire_all(grpc_client, "queue_probe", requests)):
        if error is None:
            accepted[index] = result.as_numpy("y")
        else:
            rejected[index] = (str(error), seconds)
    assert rejected, "no request was rejected: the queue is not bounded"
    assert accepted, "every request was rejected"
    for index, y in accepted.items():
        np.testing.assert_array_equal(y, samples[index])
    for message, after in rejected.values():
        assert "queue" in message.lower() and "exceed" in message.lower(), message
        assert after < 1.0, f"rejection took {after:.2f} s; it should be immediate"
    # the model keeps serving after the flood
    x = np.arange(4, dtype=np.float32)[None]
    np.testing.assert_array_equal(grpc_client.infer("queue_probe", make_inputs(grpcclient, {"x": x})).as_numpy("y"), x)
