"""Export a ViT checkpoint for `vit` (ensemble) and `vit_python`.

    python export/vit.py [--source PATH_OR_HF_NAME] [--format tensorrt,onnx] [--fp16]
                         [--output-dir model_repository]

Without --source a ViT of `pipelines.vit.SEEDED_CONFIG` with seeded random
weights is built (there is no hub here); with it, any ViT checkpoint (a local
folder, or a Hugging Face name such as google/vit-base-patch16-224-in21k).
Writes:
- checkpoints/vit/ (the reference weights and processor) and a copy in
  vit_python/1/checkpoint/;
- vit_preprocess/1/preprocessor_config.json;
- vit_model/1/model.onnx, checked against torch; then, by --format priority,
  a TensorRT plan (vit_model/1/model.plan + vit_model/configs/tensorrt.pbtxt)
  when TensorRT and a GPU are there, else the ONNX file is what serves.
The configs' pixel_values dims follow the checkpoint's image size."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from pipelines.export.configs import update_dims  # noqa: E402
from pipelines.export.formats import Profile, parse_formats, place_network  # noqa: E402
from pipelines.image import hf_processor  # noqa: E402
from pipelines.image.decode import decode_image  # noqa: E402
from pipelines.image.testset import photo_samples  # noqa: E402
from pipelines.vit import (  # noqa: E402
    INPUT_NAME,
    OUTPUT_NAME,
    TorchViT,
    checkpoint_dir,
    copy_checkpoint,
    seeded_checkpoint,
    serving_checkpoint_dir,
)

MAX_ABS_DIFF = 1e-4  # ONNX vs torch, last_hidden_state
MAX_ABS_DIFF_FP16 = 5e-2  # a TensorRT FP16 plan vs torch
MAX_BATCH = 8


def resolve_source(source: str | None, target: Path) -> str:
    """Fill `target` with the checkpoint; returns a description of where it came from."""
    if source is not None and Path(source).is_dir() and Path(source).resolve() == target.resolve():
        return str(source)  # re-export of the kept checkpoint
    if target.exists():
        shutil.rmtree(target)
    if source is None:
        seeded_checkpoint(target)
        return "seeded ViT (pipelines.vit.SEEDED_CONFIG)"
    if Path(source).is_dir():
        copy_checkpoint(Path(source), target)
        return str(source)
    from huggingface_hub import snapshot_download  # a hub name: needs network or a filled cache

    copy_checkpoint(Path(snapshot_download(source)), target)
    return source


def export_onnx(model, path: Path, height: int, width: int) -> None:
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values):
            return self.inner(pixel_values=pixel_values).last_hidden_state

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        Encoder(model).eval(),
        (torch.zeros(2, 3, height, width),),
        str(path),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )


def check_pictures() -> list[np.ndarray]:
    return [decode_image(sample.data, "rgb") for sample in photo_samples()[:6]]


def check_preprocessing(reference: TorchViT, spec: hf_processor.ImageProcessorSpec, pictures) -> float:
    expected = reference.pixel_values(pictures)
    ours = hf_processor.preprocess(pictures, spec)
    return float(np.abs(ours - expected).max())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", help="local folder or Hugging Face name (default: a seeded small ViT)")
    parser.add_argument("--format", default="tensorrt,onnx", help="priority list of tensorrt, onnx (default: tensorrt,onnx)")
    parser.add_argument("--fp16", action="store_true", help="build the TensorRT plan with FP16 kernels")
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "model_repository")
    parser.add_argument("--checkpoint-dir", type=Path, default=checkpoint_dir(), help="where the checkpoint used is kept (default checkpoints/vit)")
    args = parser.parse_args(argv)
    try:
        formats = parse_formats(args.format)
    except ValueError as error:
        parser.error(str(error))
    started = time.monotonic()

    checkpoint = args.checkpoint_dir
    origin = resolve_source(args.source, checkpoint)
    reference = TorchViT(checkpoint)
    spec = hf_processor.ImageProcessorSpec.from_file(checkpoint)
    height, width = spec.output_size

    served_checkpoint = serving_checkpoint_dir(args.output_dir)
    if served_checkpoint.exists():
        shutil.rmtree(served_checkpoint)
    shutil.copytree(checkpoint, served_checkpoint)
    preprocess_dir = args.output_dir / "vit_preprocess" / "1"
    preprocess_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(checkpoint / hf_processor.PREPROCESSOR_CONFIG, preprocess_dir / hf_processor.PREPROCESSOR_CONFIG)

    pictures = check_pictures()
    preprocess_diff = check_preprocessing(reference, spec, pictures)
    if preprocess_diff > 1e-6:
        print(f"export check failed: pipelines.image.hf_processor differs from transformers by {preprocess_diff:g}", file=sys.stderr)
        return 1

    model_dir = args.output_dir / "vit_model"
    onnx_path = model_dir / "1" / "model.onnx"
    with tempfile.TemporaryDirectory() as scratch:
        staged = Path(scratch) / "model.onnx"
        export_onnx(reference.model, staged, height, width)
        import onnxruntime as ort

        session = ort.InferenceSession(str(staged), providers=["CPUExecutionProvider"])
        pixel_values = hf_processor.preprocess(pictures, spec)
        served = session.run([OUTPUT_NAME], {INPUT_NAME: pixel_values})[0]
        expected = reference(pictures)
        onnx_diff = float(np.abs(served - expected).max())
        if onnx_diff > MAX_ABS_DIFF:
            print(f"export check failed: ONNX vs torch max |diff| {onnx_diff:g} > {MAX_ABS_DIFF}", file=sys.stderr)
            return 1
        onnx_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staged), onnx_path)

    dims = [3, height, width]
    update_dims(preprocess_dir.parent / "config.pbtxt", {INPUT_NAME: dims})
    update_dims(model_dir / "config.pbtxt", {INPUT_NAME: dims})

    def check_plan(plan_path: Path) -> None:
        from pipelines.export.formats import run_tensorrt_plan

        got = run_tensorrt_plan(plan_path, {INPUT_NAME: pixel_values}, [OUTPUT_NAME])[OUTPUT_NAME]
        limit = MAX_ABS_DIFF_FP16 if args.fp16 else 1e-3
        diff = float(np.abs(got - expected).max())
        print(f"TensorRT plan vs torch: max |diff| {diff:.2e} (limit {limit:g})")
        if diff > limit:
            raise RuntimeError(f"the plan differs from torch by {diff:g} (limit {limit:g})")

    profile = Profile((1, 3, height, width), (4, 3, height, width), (MAX_BATCH, 3, height, width))
    placement = place_network(onnx_path, model_dir, formats, {INPUT_NAME: profile}, fp16=args.fp16, check_plan=check_plan)
    print(
        f"exported {origin} -> {model_dir} ({placement.format}) in {time.monotonic() - started:.1f} s; "
        f"last_hidden_state {list(expected.shape[1:])}; on {len(pictures)} pictures: preprocessing vs transformers "
        f"max |diff| {preprocess_diff:.1e}, ONNX vs torch max |diff| {onnx_diff:.2e} (limit {MAX_ABS_DIFF:g})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
