"""The `datatypes` ensemble carries every data type through two Python models
unchanged, over HTTP (binary and JSON) and gRPC, every request keeping its
rows when requests are batched together. (Wrong dtype, missing input,
batching: tests/test_contracts.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from triton_helpers import grpc_fire_all, make_inputs, make_outputs
from tritonclient.utils import InferenceServerException

KINDS = ("string", "UINT8_array", "INT8_array", "FP32_image", "bool")


def sample(batch: int, seed: int, length: int = 5, image_shape=(3, 4, 2)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    words = np.array(
        [[f"r{seed}-{b}-{i}-ünï-文字".encode() for i in range(length)] for b in range(batch)], dtype=np.object_
    )
    return {
        "ensemble_input_string": words,
        "ensemble_input_UINT8_array": rng.integers(0, 256, (batch, length)).astype(np.uint8),
        "ensemble_input_INT8_array": rng.integers(-128, 128, (batch, length)).astype(np.int8),
        "ensemble_input_FP32_image": rng.standard_normal((batch, *image_shape)).astype(np.float32),
        "ensemble_input_bool": rng.integers(0, 2, (batch, length)).astype(bool),
    }


def assert_round_trip(sent: dict[str, np.ndarray], result) -> None:
    for kind in KINDS:
        got = result.as_numpy(f"ensemble_output_{kind}")
        want = sent[f"ensemble_input_{kind}"]
        assert got.shape == want.shape, kind
        if kind == "string":
            # JSON outputs come back as str, binary ones as bytes
            as_bytes = [[x.encode() if isinstance(x, str) else bytes(x) for x in row] for row in got]
            assert as_bytes == [[bytes(x) for x in row] for row in want]
        else:
            assert got.dtype == want.dtype, kind
            np.testing.assert_array_equal(got, want)


OUTPUTS = [f"ensemble_output_{kind}" for kind in KINDS]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_http_round_trip(http_client, binary):
    sent = sample(batch=3, seed=1)
    result = http_client.infer(
        "datatypes", make_inputs(httpclient, sent, binary), outputs=make_outputs(httpclient, OUTPUTS, binary)
    )
    assert_round_trip(sent, result)


def test_grpc_round_trip(grpc_client):
    sent = sample(batch=2, seed=2, length=7, image_shape=(1, 8, 8))
    assert_round_trip(sent, grpc_client.infer("datatypes", make_inputs(grpcclient, sent)))


def test_concurrent_requests_keep_their_rows(grpc_client):
    batch_sizes = [1, 2, 3, 1, 2, 1, 3, 2] * 4
    samples = [sample(batch=b, seed=100 + i) for i, b in enumerate(batch_sizes)]
    requests = [make_inputs(grpcclient, sent) for sent in samples]
    answers = grpc_fire_all(grpc_client, "datatypes", requests)
    assert [error for _, error, _ in answers] == [None] * len(requests)
    results = [result for result, _, _ in answers]
    for sent, result in zip(samples, results):
        assert_round_trip(sent, result)


def test_batch_above_max_batch_size_is_rejected(http_client):
    sent = sample(batch=9, seed=3)
    with pytest.raises(InferenceServerException, match="batch-size must be <= 8"):
        http_client.infer("datatypes", make_inputs(httpclient, sent))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_client_cli(triton, protocol, capsys):
    from clients.datatypes_client import main

    url = triton.http_url if protocol == "http" else triton.grpc_url
    assert main(["--url", url, "--protocol", protocol, "--batch", "3"]) == 0
    assert capsys.readouterr().out.count("unchanged") == 5
