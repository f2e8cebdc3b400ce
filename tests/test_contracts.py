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

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from triton_helpers import grpc_fire_all, make_inputs
from tritonclient.utils import InferenceServerException

from clients.common import encoded_bytes_tensor
from export.datatypes_onnx import CASES
from tools import triton_stats
from tools.testsets import images, ocr

Tensors = dict[str, np.ndarray]


@dataclass(frozen=True)
class Entry:
    model: str
    good: Callable[[int], Tensors]
    """The i-th good request."""
    bad: tuple[tuple[str, Tensors, str], ...]
    """(case, request, a fragment of the expected message)."""
    wrong_dtype: Tensors
    named: str
    """The tensor a refusal names."""
    batched_by: str | None = None
    """The model whose statistics show concurrent requests batched."""
    several: Tensors | None = None
    """A request with several items (its first axis)."""


def pictures(batched: bool, pool: list[bytes]):
    def good(i: int) -> Tensors:
        tensor = encoded_bytes_tensor(pool[i % len(pool)])
        return {"input_image": tensor[None] if batched else tensor}

    bad = tuple((name, {"input_image": encoded_bytes_tensor(data)[None] if batched else encoded_bytes_tensor(data)}, fragment) for name, data, fragment in images.invalid_samples())
    wrong = {"input_image": np.zeros((1, 16) if batched else (16,), np.float32)}
    return good, bad, wrong


def texts(batched: bool, same_length: bool = False):
    words = ["alpha", "bravo", "delta", "gamma", "omega", "sigma"]

    def good(i: int) -> Tensors:
        text = f"request {words[i % len(words)]} of many" if same_length else f"request {i} of many, {'and longer ' * (i % 4)}".strip()
        return {"text": np.array([[text.encode()]] if batched else [text.encode()], dtype=np.object_)}

    broken = np.array([[b"ok"], [b"\xff\xfe broken"]] if batched else [b"\xff\xfe broken"], dtype=np.object_)
    bad = (("invalid UTF-8", {"text": broken}, "not valid UTF-8"),)
    wrong = {"text": np.zeros((1, 1) if batched else (1,), np.int32)}
    return good, bad, wrong


def datatypes_request(batch: int, seed: int) -> Tensors:
    rng = np.random.default_rng(seed)
    return {
        "ensemble_input_string": np.array([[f"r{seed}-{b}-{i}".encode() for i in range(5)] for b in range(batch)], dtype=np.object_),
        "ensemble_input_UINT8_array": rng.integers(0, 256, (batch, 5)).astype(np.uint8),
        "ensemble_input_INT8_array": rng.integers(-128, 128, (batch, 5)).astype(np.int8),
        "ensemble_input_FP32_image": rng.standard_normal((batch, 3, 4, 2)).astype(np.float32),
        "ensemble_input_bool": rng.integers(0, 2, (batch, 5)).astype(bool),
    }


def onnx_request(batch: int, seed: int) -> Tensors:
    rng = np.random.default_rng(seed)
    return {c.input: rng.integers(0, 2 if c.dtype == "bool" else 60, (batch, 4)).astype(c.dtype) for c in CASES}


def _without(tensors: Tensors, name: str) -> Tensors:
    return {k: v for k, v in tensors.items() if k != name}


def _as(tensors: Tensors, name: str, dtype) -> Tensors:
    return {**tensors, name: tensors[name].astype(dtype)}


def entries() -> dict[str, Entry]:
    photos = [s.data for s in images.photo_samples()]
    lines = [ocr.encode(ocr.render_lines([f"serving {word} lines", "second row"], size=28)) for word in ("alpha", "bravo", "delta", "gamma")]
    found = {}
    for model, batched, pool, batched_by in (
        ("ocr", False, lines, "ocr_cls"),
        ("ocr_bls", False, lines, "ocr_cls"),
        ("orientation", True, photos, "orientation_classifier"),
        ("vit", True, photos, "vit_model"),
        ("vit_python", True, photos, "vit_python"),
        ("clip_image_embedding", True, photos, "clip_image_encoder"),
    ):
        good, bad, wrong = pictures(batched, pool)
        several = {"input_image": np.stack([encoded_bytes_tensor(photos[2])] * 2)} if batched else None
        found[model] = Entry(model, good, bad, wrong, "input_image", batched_by, several)
    for model, batched_by in (("clip_text_embedding", "clip_tokenizer"), ("text_embedding", "text_encoder")):
        good, bad, wrong = texts(batched=True, same_length=model == "text_embedding")
        several = {"text": np.array([[b"a first text"], [b"a second, longer text"], [b"third"]], dtype=np.object_)}
        found[model] = Entry(model, good, bad, wrong, "text", batched_by, several)
    good, bad, wrong = texts(batched=False)
    found["text2ids"] = Entry("text2ids", good, bad, wrong, "text")
    found["datatypes"] = Entry(
        "datatypes",
        lambda i: datatypes_request(1 + i % 3, seed=i),
        (("missing input", _without(datatypes_request(1, 0), "ensemble_input_bool"), "ensemble_input_bool"),),
        _as(datatypes_request(1, 0), "ensemble_input_FP32_image", np.int64),
        "ensemble_input_FP32_image",
        "datatypes_model1",
        datatypes_request(3, seed=7),
    )
    found["datatypes_onnx"] = Entry(
        "datatypes_onnx",
        lambda i: onnx_request(1 + i % 3, seed=i),
        (("missing input", _without(onnx_request(1, 0), "x_bool"), "x_bool"),),
        _as(onnx_request(1, 0), "x_int32", np.int64),
        "x_int32",
        "datatypes_onnx",
        onnx_request(4, seed=7),
    )
    found["stable_diffusion"] = stable_diffusion_entry()
    return found


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


ENTRIES = entries()
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
