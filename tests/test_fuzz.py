"""Property-based fuzzing (hypothesis) of every entry model over HTTP and
gRPC: random data types, shapes and element counts, missing and unknown
inputs, random and invalid-UTF-8 byte strings, truncated, corrupted and
oversized (by header) pictures. Every request gets an answer or an error
naming the problem; afterwards no stub has died, every model is READY and
answers a good request.

`make fuzz` runs more examples with a new seed each run (FUZZ_EXAMPLES, default
5000); `make test` runs 800 with a fixed seed (about 40 s)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from triton_helpers import make_inputs
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from clients.common import encoded_bytes_tensor
from runtime.watchdog import server_stubs
from testsets import images
from testsets.entries import entries

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or 800)
LONG_RUN = bool(os.environ.get("FUZZ_RANDOM"))  # make fuzz: a new seed each run

ENTRIES = entries()
MODELS = sorted(ENTRIES)
PICTURE_MODELS = {m for m, e in ENTRIES.items() if e.named == "input_image"}
TEXT_MODELS = {m for m, e in ENTRIES.items() if e.named == "text"}
DTYPES = [np.bool_, np.uint8, np.int8, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64, np.object_]
TEXTS = [b"", b" ", "caf\u00e9 \u6f22\u5b57 \U0001f600".encode(), b"\xff\xfe", b"ok \xc3\x28 broken", b"\xed\xa0\x80", b"a" * 3000, b"\x00\x01\x02"]
# What a refusal says when it names the problem (besides a tensor name).
PROBLEM_WORDS = (
    "input", "output", "expected", "shape", "dtype", "data type", "datatype", "batch", "unexpected", "must", "invalid",
    "not valid", "exceeds", "refused", "size", "element", "picture", "image", "utf-8", "missing",
)
# What a crash says: never acceptable.
CRASH_WORDS = ("is not healthy", "stub process", "traceback", "core dumped", "segmentation", "killed")

PICTURES = [s.data for s in images.photo_samples()][:4]
tried = {"requests": 0, "answered": 0, "refused": 0}


def random_array(rng: np.random.Generator, dtype, shape: tuple[int, ...]) -> np.ndarray:
    count = int(np.prod(shape)) if shape else 1
    if dtype is np.object_:
        values = [TEXTS[i] if i < len(TEXTS) else rng.bytes(int(rng.integers(0, 40))) for i in rng.integers(0, len(TEXTS) + 3, count)]
        return np.array(values, dtype=np.object_).reshape(shape)
    if dtype is np.bool_:
        return rng.integers(0, 2, count).astype(bool).reshape(shape)
    if np.issubdtype(dtype, np.floating):
        values = rng.standard_normal(count) * 10.0 ** rng.integers(-3, 6)
        values[rng.random(count) < 0.05] = np.nan
        with np.errstate(over="ignore"):  # large values become inf in float16: fine, a value to send
            return values.astype(dtype).reshape(shape)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, count, dtype=dtype, endpoint=True).reshape(shape)


def mutated_picture(data, rng: np.random.Generator) -> bytes:
    base = PICTURES[int(rng.integers(len(PICTURES)))]
    kind = data.draw(st.sampled_from(["truncate", "flip", "junk", "header", "invalid"]), label="picture")
    if kind == "truncate":
        return base[: data.draw(st.integers(0, len(base)), label="cut")]
    if kind == "flip":
        out = bytearray(base)
        for i in rng.integers(0, len(out), int(rng.integers(1, 64))):
            out[i] = int(rng.integers(0, 256))
        return bytes(out)
    if kind == "junk":
        junk = rng.bytes(int(rng.integers(1, 2000)))
        return junk + base if rng.random() < 0.5 else base + junk
    if kind == "header":
        side = st.integers(0, 300_000)
        return images.png_with_header(data.draw(side, label="width"), data.draw(side, label="height"))
    return images.invalid_samples()[int(rng.integers(len(images.invalid_samples())))][1]


def fuzzed_request(data, model: str) -> dict[str, np.ndarray]:
    entry = ENTRIES[model]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    good = entry.good(int(rng.integers(0, 4)))
    batched = next(iter(good.values())).ndim > 1 or model in TEXT_MODELS
    mode = data.draw(st.sampled_from(["tensors", "content"]), label="mode")
    if mode == "content" and model in PICTURE_MODELS:
        tensor = encoded_bytes_tensor(mutated_picture(data, rng))
        return {"input_image": tensor[None] if batched else tensor}
    if mode == "content" and model in TEXT_MODELS:
        count = data.draw(st.integers(0, 80), label="texts")  # the batch limit is 64
        values = [TEXTS[i] if i < len(TEXTS) else rng.bytes(int(rng.integers(0, 64))) for i in rng.integers(0, len(TEXTS) + 4, count)]
        shape = (count, 1) if model != "text2ids" else (count,)
        return {"text": np.array(values, dtype=np.object_).reshape(shape)}
    found = {}
    for name, array in good.items():
        if rng.random() < 0.08:
            continue  # a missing input
        dtype = array.dtype.type if rng.random() < 0.4 else DTYPES[int(rng.integers(len(DTYPES)))]
        rank = max(1, array.ndim + int(rng.integers(-1, 2)))
        shape = tuple(int(rng.integers(0, 6)) if rng.random() < 0.8 else int(rng.integers(6, 90)) for _ in range(rank))
        if rng.random() < 0.3:
            shape = array.shape  # the right shape, maybe with the wrong dtype or content
        if int(np.prod(shape)) > 20_000:
            shape = shape[:1] + (1,) * (rank - 1)
        found[name] = random_array(rng, dtype, shape)
    if rng.random() < 0.05 or not found:
        found["not_an_input"] = random_array(rng, np.float32, (1, 2))
    return found


def wire_inputs(module, tensors: dict[str, np.ndarray]) -> list:
    """InferInputs for any numpy dtype (the clients' helper knows only the models' own)."""
    inputs = []
    for name, array in tensors.items():
        item = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        item.set_data_from_numpy(array)
        inputs.append(item)
    return inputs


def names_the_problem(model: str, message: str) -> bool:
    lower = message.lower()
    tensors = set(ENTRIES[model].good(0)) | {"not_an_input"}
    return any(t.lower() in lower for t in tensors) or any(w in lower for w in PROBLEM_WORDS)


@pytest.fixture(scope="module")
def clients(triton):
    http = httpclient.InferenceServerClient(triton.http_url, network_timeout=120)
    grpc = grpcclient.InferenceServerClient(triton.grpc_url)
    yield {"http": (httpclient, http), "grpc": (grpcclient, grpc)}
    http.close()
    grpc.close()


def test_fuzz_every_entry_model(triton, clients):
    stubs_before = [stub for stub in server_stubs(triton.process.pid) if not stub.zombie]
    started = time.monotonic()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not LONG_RUN,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def one_request(data):
        model = data.draw(st.sampled_from(MODELS), label="model")
        protocol = data.draw(st.sampled_from(["http", "grpc"]), label="protocol")
        tensors = fuzzed_request(data, model)
        module, client = clients[protocol]
        tried["requests"] += 1
        try:
            kwargs = {"client_timeout": 120} if protocol == "grpc" else {}
            client.infer(model, wire_inputs(module, tensors), **kwargs)
            tried["answered"] += 1
        except InferenceServerException as error:
            tried["refused"] += 1
            message = str(error)
            assert not any(w in message.lower() for w in CRASH_WORDS), f"{model} over {protocol}: {message}"
            assert "deadline" not in message.lower(), f"{model} over {protocol}: no answer: {message}"
            assert names_the_problem(model, message), f"{model} over {protocol}: the error names no problem: {message}"

    one_request()
    seconds = time.monotonic() - started
    print(f"\nfuzz: {tried['requests']} requests in {seconds:.0f} s: {tried['answered']} answered, {tried['refused']} refused")
    # no stub died, the server and every model are READY, and each entry model still answers
    died = sorted(stub.instance for stub in stubs_before if not os.path.exists(f"/proc/{stub.pid}"))
    assert not died, f"stubs died while fuzzing: {died}"
    assert triton.is_ready()
    assert all(m.get("state") == "READY" for m in triton.model_states())
    _, grpc = clients["grpc"]
    for model, entry in ENTRIES.items():
        grpc.infer(model, make_inputs(grpcclient, entry.good(0)))
