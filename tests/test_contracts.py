"""What every entry model promises, checked the same way for each on the real
server (each pipeline's own test file checks its answers against the
reference library):

- a bad request (a broken picture, invalid UTF-8, a missing input) fails
  alone, with a message naming the tensor and the problem, while the good
  requests sent with it in the same burst get the answers they get alone;
- a wrong data type is refused, naming the tensor, over HTTP and gRPC;
- concurrent requests are batched by the model that does the batching;
- a request may carry several items, and gets one answer row per item."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from triton_helpers import grpc_fire_all, make_inputs
from tritonclient.utils import InferenceServerException

from clients import triton_stats
from testsets.entries import Entry, Tensors, entries


def stable_diffusion_entry() -> Entry:
    def good(i: int, prompts=None) -> Tensors:
        # guidance 1.0: one UNet item per step, so batched items come from different requests
        return {
            "prompt": np.array(prompts or [f"request {i} of many".encode()], dtype=np.object_),
            "steps": np.array([2], np.int32),
            "guidance_scale": np.array([1.0], np.float32),
            "seed": np.array([i], np.int64),
        }

    bad = (("invalid UTF-8", {**good(0), "prompt": np.array([b"\xff\xfe broken"], dtype=np.object_)}, "not valid UTF-8"),)
    wrong = {**good(0), "prompt": np.zeros((1,), np.int32)}
    return Entry("stable_diffusion", good, bad, wrong, "prompt", "sd_unet", good(0, [b"a first prompt", b"a second one"]))


# stable_diffusion is checked here, not in the soak and the fuzzing: seconds per request
ENTRIES = {**entries(), "stable_diffusion": stable_diffusion_entry()}
BAD_CASES = [(model, case) for model, entry in ENTRIES.items() for case in range(len(entry.bad))]


def assert_same(alone: dict[str, np.ndarray], in_burst: dict[str, np.ndarray], where: str) -> None:
    assert alone.keys() == in_burst.keys(), where
    for name, want in alone.items():
        got = in_burst[name]
        assert got.shape == want.shape, (where, name)
        if want.dtype.kind in "fc":
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5, err_msg=f"{where} {name}")
        else:
            assert np.array_equal(got, want), (where, name)


def outputs_of(client, model: str, tensors: Tensors) -> dict[str, np.ndarray]:
    result = client.infer(model, make_inputs(grpcclient, tensors))
    return {o.name: result.as_numpy(o.name) for o in result.get_response().outputs}


ALONE: dict[str, list] = {}


def answers_alone(client, entry: Entry, count: int = 3) -> list[dict[str, np.ndarray]]:
    """The first good requests' answers, each sent on its own (once per model)."""
    if entry.model not in ALONE:
        ALONE[entry.model] = [outputs_of(client, entry.model, entry.good(i)) for i in range(count)]
    return ALONE[entry.model]


@pytest.mark.parametrize("model,case", BAD_CASES, ids=[f"{m}-{ENTRIES[m].bad[c][0]}" for m, c in BAD_CASES])
def test_bad_request_fails_alone(grpc_client, model, case):
    entry = ENTRIES[model]
    name, bad, fragment = entry.bad[case]
    goods = [entry.good(i) for i in range(3)]
    alone = answers_alone(grpc_client, entry)
    answers = grpc_fire_all(grpc_client, model, [make_inputs(grpcclient, t) for t in (goods[0], bad, goods[1], goods[2])])
    error = answers[1][1]
    assert error is not None, f"{model} accepted {name}"
    assert fragment in str(error) and entry.named in str(error), (model, name, str(error))
    for i, (result, err, _) in zip(range(3), (answers[0], answers[2], answers[3])):
        assert err is None, (model, err)
        assert_same(alone[i], {o.name: result.as_numpy(o.name) for o in result.get_response().outputs}, f"{model} request {i}")


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", sorted(ENTRIES))
def test_wrong_dtype_is_refused_naming_the_tensor(http_client, grpc_client, protocol, model):
    entry = ENTRIES[model]
    module, client = (httpclient, http_client) if protocol == "http" else (grpcclient, grpc_client)
    with pytest.raises(InferenceServerException, match=entry.named):
        client.infer(model, make_inputs(module, entry.wrong_dtype))
    client.infer(model, make_inputs(module, entry.good(0)))  # and it goes on


BATCHED = sorted(model for model, entry in ENTRIES.items() if entry.batched_by)


@pytest.mark.parametrize("model", BATCHED)
def test_concurrent_requests_are_batched(grpc_client, http_client, model):
    entry = ENTRIES[model]
    count = 24
    before = triton_stats.settled(http_client, entry.batched_by)
    answers = grpc_fire_all(grpc_client, model, [make_inputs(grpcclient, entry.good(i)) for i in range(count)], timeout=300)
    assert all(error is None for _, error, _ in answers), [str(e) for _, e, _ in answers if e]
    done = triton_stats.since(http_client, entry.batched_by, before, count)
    print(f"\n{model}: {entry.batched_by} ran {done.inferences} items in {done.executions} executions")
    assert done.executions < done.inferences, f"{entry.batched_by}: {done.executions} executions for {done.inferences} items"


SEVERAL = sorted(model for model, entry in ENTRIES.items() if entry.several is not None)


@pytest.mark.parametrize("model", SEVERAL)
def test_several_items_in_one_request(http_client, model):
    entry = ENTRIES[model]
    items = len(next(iter(entry.several.values())))
    result = http_client.infer(model, make_inputs(httpclient, entry.several))
    for output in result.get_response()["outputs"]:
        assert result.as_numpy(output["name"]).shape[0] == items, (model, output["name"])
