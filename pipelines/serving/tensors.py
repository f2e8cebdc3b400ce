"""Triton data types, request validation and batch stacking/splitting.

Pure numpy: the Python models hand their request tensors in as dicts of
arrays and get dicts of arrays (or an error message) back per request."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

TRITON_TO_NUMPY = {
    "TYPE_BOOL": np.bool_,
    "TYPE_UINT8": np.uint8,
    "TYPE_UINT16": np.uint16,
    "TYPE_UINT32": np.uint32,
    "TYPE_UINT64": np.uint64,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
    "TYPE_STRING": np.object_,
}


def short_type(triton_type: str) -> str:
    """'TYPE_FP32' -> 'FP32', 'TYPE_STRING' -> 'BYTES' (the wire names)."""
    name = triton_type.removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


def numpy_type_name(array: np.ndarray) -> str:
    for triton_type, np_type in TRITON_TO_NUMPY.items():
        if array.dtype == np_type:
            return short_type(triton_type)
    return str(array.dtype)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    triton_type: str
    dims: tuple[int, ...]  # without the batch dimension
    optional: bool = False

    @property
    def numpy_type(self):
        return TRITON_TO_NUMPY[self.triton_type]

    @classmethod
    def from_config(cls, entry: dict) -> "TensorSpec":
        return cls(
            name=entry["name"],
            triton_type=entry["data_type"],
            dims=tuple(int(d) for d in entry.get("dims", [])),
            optional=bool(entry.get("optional", False)),
        )


def specs_from_config(config: dict, section: str) -> list[TensorSpec]:
    return [TensorSpec.from_config(entry) for entry in config.get(section, [])]


class RequestError(ValueError):
    """A request that cannot be served; the message goes back to the client."""


def _shape_text(batched: bool, dims: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in ((-1,) if batched else ()) + tuple(dims)) + "]"


def validate_request(
    inputs: dict[str, np.ndarray | None],
    specs: Iterable[TensorSpec],
    max_batch_size: int,
) -> None:
    """Raise RequestError naming the tensor and what was expected."""
    batched = max_batch_size > 0
    batch_sizes = set()
    for spec in specs:
        array = inputs.get(spec.name)
        if array is None:
            if spec.optional:
                continue
            raise RequestError(f"missing input tensor '{spec.name}'")
        if array.dtype != spec.numpy_type and not (spec.triton_type == "TYPE_STRING" and array.dtype.kind in "OSU"):
            raise RequestError(
                f"input '{spec.name}': expected data type {short_type(spec.triton_type)}, got {numpy_type_name(array)}"
            )
        expected_rank = len(spec.dims) + (1 if batched else 0)
        shape_ok = array.ndim == expected_rank and all(
            d < 0 or d == actual for d, actual in zip(spec.dims, array.shape[1:] if batched else array.shape)
        )
        if not shape_ok:
            raise RequestError(
                f"input '{spec.name}': expected shape {_shape_text(batched, spec.dims)}, got {list(array.shape)}"
            )
        if batched:
            batch_sizes.add(array.shape[0])
    if batched:
        if len(batch_sizes) > 1:
            raise RequestError(f"inputs disagree on the batch size: {sorted(batch_sizes)}")
        if batch_sizes and max(batch_sizes) > max_batch_size:
            raise RequestError(f"batch size {max(batch_sizes)} exceeds max_batch_size {max_batch_size}")
        if batch_sizes and min(batch_sizes) < 1:
            raise RequestError("batch size must be at least 1")


def group_by_item_shape(requests: Sequence[dict[str, np.ndarray]]) -> list[list[int]]:
    """Indices of requests whose tensors agree on every non-batch dimension
    (those can be stacked into one run), in first-seen order. An optional
    input not sent (None) is left out, so requests with and without it
    fall in different groups."""
    groups: "OrderedDict[tuple, list[int]]" = OrderedDict()
    for index, tensors in enumerate(requests):
        key = tuple(sorted((name, array.shape[1:], array.dtype.str) for name, array in tensors.items() if array is not None))
        groups.setdefault(key, []).append(index)
    return list(groups.values())


def stack_batch(requests: Sequence[dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], list[int]]:
    """Concatenate same-shaped requests along the batch axis."""
    names = list(requests[0])
    sizes = [len(next(iter(r.values()))) if r else 0 for r in requests]
    if len(requests) == 1:
        return dict(requests[0]), sizes
    return {name: np.concatenate([r[name] for r in requests], axis=0) for name in names}, sizes


def split_batch(outputs: dict[str, np.ndarray], sizes: Sequence[int]) -> list[dict[str, np.ndarray]]:
    """Inverse of stack_batch for the outputs of one run."""
    bounds = np.cumsum([0, *sizes])
    return [{name: array[bounds[i] : bounds[i + 1]] for name, array in outputs.items()} for i in range(len(sizes))]
