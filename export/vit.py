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

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from pipelines.export.configs import update_dims  # noqa: E402
from pipelines.export.formats import Profile, place_network, run_tensorrt_plan  # noqa: E402
from pipelines.export.script import arguments, export_onnx, fill_checkpoint  # noqa: E402
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


class Encoder(torch.nn.Module):
    """ViTModel -> last_hidden_state, as one module to export."""

    def __init__(self, vit):
        super().__init__()
        self.vit = vit

    def forward(self, pixel_values):
        return self.vit(pixel_values=pixel_values).last_hidden_state


def check_pictures() -> list[np.ndarray]:
    return [decode_image(sample.data, "rgb") for sample in photo_samples()[:6]]


def main(argv=None) -> int:
    args, formats = arguments(__doc__.splitlines()[0], "ViT", checkpoint_dir(), argv)
    started = time.monotonic()
    checkpoint = args.checkpoint_dir
    origin = fill_checkpoint(args.source, checkpoint, seeded_checkpoint, copy_checkpoint, "seeded ViT (pipelines.vit.SEEDED_CONFIG)")
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
    pixel_values = hf_processor.preprocess(pictures, spec)
    preprocess_diff = float(np.abs(pixel_values - reference.pixel_values(pictures)).max())
    if preprocess_diff > 1e-6:
        print(f"export check failed: pipelines.image.hf_processor differs from transformers by {preprocess_diff:g}", file=sys.stderr)
        return 1

    model_dir = args.output_dir / "vit_model"
    onnx_path = model_dir / "1" / "model.onnx"
    with tempfile.TemporaryDirectory() as scratch:
        staged = Path(scratch) / "model.onnx"
        sample = {INPUT_NAME: np.zeros((2, 3, height, width), np.float32)}
        export_onnx(Encoder(reference.model), sample, staged, OUTPUT_NAME, {INPUT_NAME: {0: "batch"}})
        import onnxruntime as ort

        session = ort.InferenceSession(str(staged), providers=["CPUExecutionProvider"])
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
