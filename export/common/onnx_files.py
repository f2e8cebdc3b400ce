"""ONNX files of any size. Protobuf caps one file at 2 GB, and a real SD 1.x UNet
is 3.4 GB in f32. A network whose weights pass `EXTERNAL_DATA_BYTES` is
therefore written as the graph (`model.onnx`) plus one weights file beside it
(`model.onnx.data`). ONNX Runtime, OpenVINO and TensorRT's parser read this
pair from the version folder as it is."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx

EXTERNAL_DATA_BYTES = 1 << 30
"""Weights above this go to the .data file (half the protobuf limit: the graph keeps room)."""


def data_file(path: Path) -> Path:
    return path.with_name(path.name + ".data")


def save_onnx(model, path: Path) -> None:
    """Write `model` (weights loaded) to `path`, and its weights to
    `path`.data when they are large; a stale weights file goes."""
    data = data_file(path)
    data.unlink(missing_ok=True)
    if sum(len(tensor.raw_data) for tensor in model.graph.initializer) <= EXTERNAL_DATA_BYTES:
        onnx.save_model(model, str(path))
    else:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name, size_threshold=1024)


def move_onnx(source: Path, target: Path) -> None:
    """Move an ONNX file written by `save_onnx` (and its weights file, if it
    has one) to `target`; a stale weights file at the target goes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    data_file(target).unlink(missing_ok=True)
    if data_file(source).exists():
        shutil.move(str(data_file(source)), data_file(target))
    shutil.move(str(source), target)
