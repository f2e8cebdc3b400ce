"""Requests for every entry model of the repository: good ones (real
pictures and texts, varied per index), bad ones with the fragment of the
message their refusal must carry, a wrong data type, and a request with
several items. The contract tests, the soak and the fuzzing all use them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from clients.common import encoded_bytes_tensor
from references.datatypes import CASES
from testsets import images, ocr

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
    return found
