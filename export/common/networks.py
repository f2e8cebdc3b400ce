"""A torch network as the ONNX file of a model, checked before it is placed.

Each export wraps the piece of a checkpoint it serves in `Forward` (a
function of the checkpoint's module, as the module to export), writes it
with `export_onnx` into a `staged_onnx` folder, compares `run_onnx` with
torch there, and only a file that passed moves into the model's version
folder."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch

from export.common.onnx_files import move_onnx, save_onnx


class Forward(torch.nn.Module):
    """`forward(inner, *inputs)` as a module around `inner` (a checkpoint's
    model, pipeline part): one network to export, its inputs in the order
    of the ONNX graph's inputs."""

    def __init__(self, inner: torch.nn.Module, forward: Callable):
        super().__init__()
        self.inner = inner
        self.function = forward

    def forward(self, *inputs):
        return self.function(self.inner, *inputs)


def export_onnx(module, sample: dict, path: Path, output_names, dynamic_axes: dict) -> None:
    """torch.onnx.export (TorchScript exporter, opset 17) of `module` called
    on the numpy `sample` inputs, in their order; every output's batch axis
    is dynamic. Large networks get one weights file (export/common/onnx_files.py)."""
    output_names = [output_names] if isinstance(output_names, str) else list(output_names)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        module.eval(),
        tuple(torch.from_numpy(array) for array in sample.values()),
        str(path),
        input_names=list(sample),
        output_names=output_names,
        dynamic_axes={**dynamic_axes, **{name: {0: "batch"} for name in output_names if name not in dynamic_axes}},
        opset_version=17,
        dynamo=False,
    )
    # over 2 GB torch writes a file per tensor beside the graph: one weights file instead
    save_onnx(onnx.load(str(path)), path)


def run_onnx(path: Path, feeds: dict[str, np.ndarray], outputs: Sequence[str]) -> list[np.ndarray]:
    """The ONNX file on onnxruntime's CPU provider: what an export compares with torch."""
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(list(outputs), feeds)


@contextmanager
def staged_onnx(version_dir: Path) -> Iterator[Path]:
    """A scratch folder to write and check ONNX files in: when the block
    ends without an exception, each ONNX file there moves into `version_dir`
    under its name (with its weights file); a failed check places nothing."""
    with tempfile.TemporaryDirectory() as scratch:
        yield Path(scratch)
        for staged in sorted(Path(scratch).glob("*.onnx")):
            move_onnx(staged, Path(version_dir) / staged.name)
