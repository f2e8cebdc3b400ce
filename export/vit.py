"""Export a ViT checkpoint for `vit` (ensemble) and `vit_python`.

    python export/vit.py [--source PATH_OR_HF_NAME] [--format tensorrt,onnx] [--fp16]
                         [--output-dir model_repository] [--checkpoint-dir checkpoints/vit]

Without --source (and no recorded one) a ViT of `SEEDED_CONFIG` with seeded
random weights is built (there is no hub here); with it, any ViT checkpoint
(a local folder, or a Hugging Face name such as google/vit-base-patch16-224-in21k).
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
import time
from functools import partial
from pathlib import Path

import numpy as np
from transformers import ViTConfig, ViTModel
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

from export.common.checkpoints import copy_checkpoint_files, fill_checkpoint, save_seeded
from export.common.cli import ExportArguments, done
from export.common.formats import Profile, place_network, run_tensorrt_plan
from export.common.networks import Forward, export_onnx, run_onnx, staged_onnx
from lint.pbtxt import edit_config
from pipelines.image import hf_processor
from pipelines.image.decode import decode_image
from pipelines.vit import INPUT_NAME, OUTPUT_NAME
from pipelines.vit.models import CHECKPOINT_DIR, TorchViT
from testsets.images import photo_samples

SEEDED_CONFIG = dict(
    image_size=224,
    patch_size=16,
    hidden_size=192,
    num_hidden_layers=12,
    num_attention_heads=3,
    intermediate_size=768,
)
"""ViT-Tiny/16's shape (197 tokens x 192), small enough for a 2-core CPU."""
SEED = 0
SEEDED_NAME = "seeded ViT (export/vit.py SEEDED_CONFIG)"
CHECKPOINT_FILES = ("config.json", ("model.safetensors", "pytorch_model.bin"), hf_processor.PREPROCESSOR_CONFIG)
MAX_ABS_DIFF = 1e-4  # ONNX vs torch, last_hidden_state
MAX_ABS_DIFF_FP16 = 5e-2  # a TensorRT FP16 plan vs torch
MAX_BATCH = 8


def serving_checkpoint_dir(repository: Path) -> Path:
    """The copy vit_python serves."""
    return Path(repository) / "vit_python" / "1" / CHECKPOINT_DIR


def seeded_parts():
    yield ViTModel(ViTConfig(**SEEDED_CONFIG)).eval()
    yield ViTImageProcessorPil()


def seeded_checkpoint(target: Path, seed: int = SEED) -> Path:
    """Write a ViTModel of SEEDED_CONFIG with weights drawn after
    torch.manual_seed(seed), and the default ViT image processor."""
    return save_seeded(target, seed, seeded_parts)


def copy_checkpoint(source: Path, target: Path) -> Path:
    """The files a ViT checkpoint needs, copied (nothing else of a hub snapshot)."""
    return copy_checkpoint_files(source, target, "ViT (with an image processor)", CHECKPOINT_FILES)


def last_hidden_state(vit, pixel_values):
    return vit(pixel_values=pixel_values).last_hidden_state


def check_pictures() -> list[np.ndarray]:
    return [decode_image(sample.data, "rgb") for sample in photo_samples()[:6]]


def check_plan(plan_path: Path, pixel_values: np.ndarray, expected: np.ndarray, fp16: bool) -> None:
    got = run_tensorrt_plan(plan_path, {INPUT_NAME: pixel_values}, [OUTPUT_NAME])[OUTPUT_NAME]
    limit = MAX_ABS_DIFF_FP16 if fp16 else 1e-3
    diff = float(np.abs(got - expected).max())
    print(f"TensorRT plan vs torch: max |diff| {diff:.2e} (limit {limit:g})")
    if diff > limit:
        raise RuntimeError(f"the plan differs from torch by {diff:g} (limit {limit:g})")


def main(argv=None) -> int:
    args = ExportArguments("vit", __doc__.splitlines()[0], "a seeded small ViT", checkpoint=True).parse(argv)
    started = time.monotonic()
    checkpoint = args.checkpoint_dir
    origin = fill_checkpoint(args, seeded_checkpoint, copy_checkpoint, SEEDED_NAME)
    reference = TorchViT(checkpoint)
    spec = hf_processor.ImageProcessorSpec.from_file(checkpoint)
    height, width = spec.output_size

    served_checkpoint = serving_checkpoint_dir(args.output_dir)
    if served_checkpoint.exists():
        shutil.rmtree(served_checkpoint)
    shutil.copytree(checkpoint, served_checkpoint)
    preprocess_dir = args.output_dir / "vit_preprocess" / "1"
    preprocess_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoint / hf_processor.PREPROCESSOR_CONFIG, preprocess_dir / hf_processor.PREPROCESSOR_CONFIG)

    pictures = check_pictures()
    pixel_values = hf_processor.preprocess(pictures, spec)
    preprocess_diff = float(np.abs(pixel_values - reference.pixel_values(pictures)).max())
    if preprocess_diff > 1e-6:
        raise SystemExit(f"export check failed: pipelines.image.hf_processor differs from transformers by {preprocess_diff:g}")

    model_dir = args.output_dir / "vit_model"
    expected = reference(pictures)
    with staged_onnx(model_dir / "1") as scratch:
        sample = {INPUT_NAME: np.zeros((2, 3, height, width), np.float32)}
        export_onnx(Forward(reference.model, last_hidden_state), sample, scratch / "model.onnx", OUTPUT_NAME, {INPUT_NAME: {0: "batch"}})
        onnx_diff = float(np.abs(run_onnx(scratch / "model.onnx", {INPUT_NAME: pixel_values}, [OUTPUT_NAME])[0] - expected).max())
        if onnx_diff > MAX_ABS_DIFF:
            raise SystemExit(f"export check failed: ONNX vs torch max |diff| {onnx_diff:g} > {MAX_ABS_DIFF}")

    dims = [3, height, width]
    edit_config(preprocess_dir.parent / "config.pbtxt", dims={INPUT_NAME: dims})
    edit_config(model_dir / "config.pbtxt", dims={INPUT_NAME: dims})
    profile = Profile((1, 3, height, width), (4, 3, height, width), (MAX_BATCH, 3, height, width))
    check = partial(check_plan, pixel_values=pixel_values, expected=expected, fp16=args.fp16)
    placement = place_network(model_dir / "1" / "model.onnx", model_dir, args.formats, {INPUT_NAME: profile}, fp16=args.fp16, check_plan=check)
    summary = (
        f"exported {origin} -> {model_dir} ({placement.format}) in {time.monotonic() - started:.1f} s; "
        f"last_hidden_state {list(expected.shape[1:])}; on {len(pictures)} pictures: preprocessing vs transformers "
        f"max |diff| {preprocess_diff:.1e}, ONNX vs torch max |diff| {onnx_diff:.2e} (limit {MAX_ABS_DIFF:g})"
    )
    return done(args, started, summary)


if __name__ == "__main__":
    sys.exit(main())
