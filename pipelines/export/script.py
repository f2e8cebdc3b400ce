"""What export/vit.py and export/clip.py share: their command line, where
the checkpoint comes from, and the torch -> ONNX step."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Callable

from pipelines.export.formats import parse_formats
from pipelines.runtime.distribution import REPO_ROOT


def arguments(description: str, network: str, checkpoint_dir: Path, argv=None) -> tuple[argparse.Namespace, list[str]]:
    """--source, --format, --fp16, --output-dir, --checkpoint-dir parsed; the
    format priority list checked (a usage error otherwise)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--source", help=f"local folder or Hugging Face name (default: a seeded small {network})")
    parser.add_argument("--format", default="tensorrt,onnx", help="priority list of tensorrt, onnx (default: tensorrt,onnx)")
    parser.add_argument("--fp16", action="store_true", help="build the TensorRT plans with FP16 kernels")
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "model_repository")
    parser.add_argument(
        "--checkpoint-dir", type=Path, default=checkpoint_dir, help=f"where the checkpoint used is kept (default {checkpoint_dir})"
    )
    args = parser.parse_args(argv)
    try:
        return args, parse_formats(args.format)
    except ValueError as error:
        parser.error(str(error))


def fill_checkpoint(
    source: str | None, target: Path, seeded: Callable[[Path], object], copy: Callable[[Path, Path], object], seeded_name: str
) -> str:
    """Put the checkpoint in `target`: `seeded(target)` without a source,
    `copy(folder, target)` for a local folder or a Hugging Face snapshot.
    Returns where it came from."""
    if source is not None and Path(source).is_dir() and Path(source).resolve() == target.resolve():
        return str(source)  # re-export of the kept checkpoint
    if target.exists():
        shutil.rmtree(target)
    if source is None:
        seeded(target)
        return seeded_name
    if Path(source).is_dir():
        copy(Path(source), target)
        return str(source)
    from huggingface_hub import snapshot_download  # a hub name: needs network or a filled cache

    copy(Path(snapshot_download(source)), target)
    return source


def export_onnx(module, sample: dict, path: Path, output_name: str, dynamic_axes: dict) -> None:
    """torch.onnx.export (TorchScript exporter, opset 17) of `module` called
    on the numpy `sample` inputs, in their order; the output's batch axis is dynamic."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        module.eval(),
        tuple(torch.from_numpy(array) for array in sample.values()),
        str(path),
        input_names=list(sample),
        output_names=[output_name],
        dynamic_axes={**dynamic_axes, output_name: {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
