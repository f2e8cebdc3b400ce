"""Export a CLIP checkpoint for `clip_image_embedding` and `clip_text_embedding`.

    python export/clip.py [--source PATH_OR_HF_NAME] [--format tensorrt,onnx] [--fp16]
                          [--output-dir model_repository] [--checkpoint-dir checkpoints/clip]

Without --source (and no recorded one) a CLIPModel of `SEEDED_CONFIG` with seeded
random weights is built (there is no hub here), with the real CLIP tokenizer
rebuilt from open_clip's BPE file; with it, any CLIP checkpoint (a local
folder, or a Hugging Face name such as openai/clip-vit-base-patch32).
Writes checkpoints/clip/ (the reference), clip_tokenizer/1/ (tokenizer.json,
tokenizer_config.json), clip_image_preprocess/1/preprocessor_config.json and
the two towers, each with its projection and the L2 normalisation:
clip_image_encoder/1/model.onnx and clip_text_encoder/1/model.onnx, checked
against torch; then, by --format priority, TensorRT plans where TensorRT and
a GPU are. The configs' embedding and pixel_values dims follow the checkpoint."""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPConfig, CLIPModel
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from export.common.checkpoints import copy_checkpoint_files, fill_checkpoint, save_seeded
from export.common.cli import ExportArguments, done
from export.common.clip_tokenizer import CONTEXT_LENGTH, TOKENIZER_FILES, VOCAB_SIZE, build_tokenizer
from export.common.formats import Profile, place_network, run_tensorrt_plan
from export.common.networks import Forward, export_onnx, run_onnx, staged_onnx
from lint.pbtxt import edit_config
from pipelines.image import hf_processor
from pipelines.image.decode import decode_image
from pipelines.text.tokenizer import SentenceTokenizer
from references.clip import OUTPUT_NAME, TEXT_INPUTS, TorchCLIP
from testsets.images import photo_samples
from testsets.sentences import varied_sentences

IMAGE_INPUT = "pixel_values"
IMAGE_TOWER, TEXT_TOWER = "clip_image_encoder", "clip_text_encoder"
SEED = 0
SEEDED_CONFIG = dict(
    projection_dim=512,
    text_config=dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=256,
        intermediate_size=1024,
        num_hidden_layers=6,
        num_attention_heads=4,
        max_position_embeddings=CONTEXT_LENGTH,
    ),
    vision_config=dict(
        image_size=224,
        patch_size=32,
        hidden_size=384,
        intermediate_size=1536,
        num_hidden_layers=6,
        num_attention_heads=6,
    ),
)
"""ViT-B/32's geometry (224 px, 32 px patches, 77 tokens, D = 512) at a
smaller width and depth, for a 2-core CPU."""
SEEDED_NAME = "seeded CLIP (export/clip.py SEEDED_CONFIG)"


def seeded_parts():
    yield CLIPModel(CLIPConfig(**SEEDED_CONFIG)).eval()
    yield CLIPImageProcessorPil()
    yield build_tokenizer


def seeded_checkpoint(target: Path, seed: int = SEED) -> Path:
    """A CLIPModel of SEEDED_CONFIG with weights drawn after
    torch.manual_seed(seed), CLIP's image processor and the real tokenizer."""
    return save_seeded(target, seed, seeded_parts)


def copy_checkpoint(source: Path, target: Path) -> Path:
    """A CLIP checkpoint's files (weights, processor, tokenizer) into `target`;
    a checkpoint without tokenizer.json gets the rebuilt tokenizer."""
    required = ("config.json", ("model.safetensors", "pytorch_model.bin"), hf_processor.PREPROCESSOR_CONFIG)
    copy_checkpoint_files(source, target, "CLIP", required, optional=TOKENIZER_FILES if (Path(source) / "tokenizer.json").exists() else ())
    if not (target / "tokenizer.json").exists():
        build_tokenizer(target)
    return target


MAX_ABS_DIFF = 1e-4
MIN_COSINE = 0.99999
MIN_COSINE_FP16 = 0.999


def image_features(clip, pixel_values):
    """get_image_features (vision tower + projection), L2-normalised."""
    return torch.nn.functional.normalize(clip.get_image_features(pixel_values=pixel_values).pooler_output, p=2.0, dim=-1)


def text_features(clip, input_ids, attention_mask):
    """get_text_features (text tower + projection), L2-normalised."""
    features = clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
    return torch.nn.functional.normalize(features, p=2.0, dim=-1)


def compare(served: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    return float(np.abs(served - expected).max()), float((served * expected).sum(axis=1).min())


def check_texts() -> list[str]:
    long_text = " ".join(["a very long caption that goes on"] * 30)
    return ["", "   ", "a photo of a cat", "Ein Foto eines Hundes", "一张猫的照片", "🚀 rocket launch", long_text] + varied_sentences(25)


@dataclass
class Checked:
    """The served pre-processing's inputs and outputs, equal to transformers'."""

    pictures: list[np.ndarray]
    pixel_values: np.ndarray
    pixel_diff: float
    texts: list[str]
    token_ids: dict[str, np.ndarray]


@dataclass
class Tower:
    """One network to export: the module, its example and check inputs, torch's outputs on those."""

    module: torch.nn.Module
    sample: dict[str, np.ndarray]
    feeds: dict[str, np.ndarray]
    expected: np.ndarray
    dynamic_axes: dict
    profile: dict[str, Profile]


def place_processing_files(repo: Path, checkpoint: Path) -> Path:
    """The tokenizer and processor files of clip_tokenizer/1 and clip_image_preprocess/1; the tokenizer's folder."""
    tokenizer_dir = repo / "clip_tokenizer" / "1"
    tokenizer_dir.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(checkpoint / name, tokenizer_dir / name)
    preprocess_dir = repo / "clip_image_preprocess" / "1"
    preprocess_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoint / hf_processor.PREPROCESSOR_CONFIG, preprocess_dir / hf_processor.PREPROCESSOR_CONFIG)
    return tokenizer_dir


def check_preprocessing(reference: TorchCLIP, spec: hf_processor.ImageProcessorSpec, tokenizer_dir: Path) -> Checked:
    """The served pre-processing equals transformers' before any network runs."""
    pictures = [decode_image(sample.data, "rgb") for sample in photo_samples()[:8]]
    pixel_values = hf_processor.preprocess(pictures, spec)
    pixel_diff = float(np.abs(pixel_values - reference.pixel_values(pictures)).max())
    texts = check_texts()
    served_tokens = SentenceTokenizer(tokenizer_dir)
    if served_tokens.max_length != CONTEXT_LENGTH:
        raise SystemExit(f"export check failed: tokenizer truncates at {served_tokens.max_length}, not {CONTEXT_LENGTH}")
    ours = served_tokens(texts).as_dict()
    theirs = reference.tokenize(texts)
    if pixel_diff > 1e-6 or any(not np.array_equal(ours[name], theirs[name]) for name in TEXT_INPUTS):
        raise SystemExit(f"export check failed: preprocessing differs from transformers (pixels {pixel_diff:g}, or token ids)")
    return Checked(pictures, pixel_values, pixel_diff, texts, theirs)


def towers(reference: TorchCLIP, size: tuple[int, int], checked: Checked) -> dict[str, Tower]:
    shape = (3, *size)
    return {
        IMAGE_TOWER: Tower(
            Forward(reference.model, image_features),
            sample={IMAGE_INPUT: np.zeros((2, *shape), np.float32)},
            feeds={IMAGE_INPUT: checked.pixel_values},
            expected=reference.embed_images(checked.pictures),
            dynamic_axes={IMAGE_INPUT: {0: "batch"}},
            profile={IMAGE_INPUT: Profile((1, *shape), (4, *shape), (16, *shape))},
        ),
        TEXT_TOWER: Tower(
            Forward(reference.model, text_features),
            sample={name: array[:2, :8] for name, array in checked.token_ids.items()},
            feeds=checked.token_ids,
            expected=reference.embed_texts(checked.texts),
            dynamic_axes={name: {0: "batch", 1: "sequence"} for name in TEXT_INPUTS},
            profile={name: Profile((1, 1), (8, 16), (64, CONTEXT_LENGTH)) for name in TEXT_INPUTS},
        ),
    }


def export_tower(repo: Path, model_name: str, tower: Tower) -> str:
    """model.onnx of the tower, placed once it matches torch; its line of the summary."""
    with staged_onnx(repo / model_name / "1") as scratch:
        export_onnx(tower.module, tower.sample, scratch / "model.onnx", OUTPUT_NAME, tower.dynamic_axes)
        diff, cosine = compare(run_onnx(scratch / "model.onnx", tower.feeds, [OUTPUT_NAME])[0], tower.expected)
        report = f"{model_name}: max |diff| {diff:.1e}, min cosine {cosine:.7f}"
        if diff > MAX_ABS_DIFF or cosine < MIN_COSINE:
            raise SystemExit(f"export check failed: {report} (limits {MAX_ABS_DIFF:g}, {MIN_COSINE})")
    return report


def set_dims(repo: Path, size: tuple[int, int], dim: int) -> None:
    """The configs' pixel_values and embedding dims, the checkpoint's."""
    pixel_dims = [3, *size]
    edit_config(repo / "clip_image_preprocess" / "config.pbtxt", dims={IMAGE_INPUT: pixel_dims})
    edit_config(repo / IMAGE_TOWER / "config.pbtxt", dims={IMAGE_INPUT: pixel_dims, OUTPUT_NAME: [dim]})
    for name in (TEXT_TOWER, "clip_image_embedding", "clip_text_embedding"):
        edit_config(repo / name / "config.pbtxt", dims={OUTPUT_NAME: [dim]})


def check_plan(plan_path: Path, model_name: str, tower: Tower, fp16: bool) -> None:
    got = run_tensorrt_plan(plan_path, tower.feeds, [OUTPUT_NAME])[OUTPUT_NAME]
    _, cosine = compare(got, tower.expected)
    limit = MIN_COSINE_FP16 if fp16 else MIN_COSINE
    print(f"{model_name}: TensorRT plan vs torch: min cosine {cosine:.6f} (limit {limit})")
    if cosine < limit:
        raise RuntimeError(f"the plan's min cosine with torch is {cosine:.6f} (limit {limit})")


def place_tower(args, model_name: str, tower: Tower) -> str:
    """The tower's serving format, by --format priority."""
    model_dir = args.output_dir / model_name
    check = partial(check_plan, model_name=model_name, tower=tower, fp16=args.fp16)
    placement = place_network(model_dir / "1" / "model.onnx", model_dir, args.formats, tower.profile, args.fp16, check)
    return f"{model_name} {placement.format}"


def main(argv=None) -> int:
    args = ExportArguments("clip", __doc__.splitlines()[0], "a seeded small CLIP", checkpoint=True).parse(argv)
    started = time.monotonic()
    origin = fill_checkpoint(args, seeded_checkpoint, copy_checkpoint, SEEDED_NAME)
    reference = TorchCLIP(args.checkpoint_dir)
    spec = hf_processor.ImageProcessorSpec.from_file(args.checkpoint_dir)
    checked = check_preprocessing(reference, spec, place_processing_files(args.output_dir, args.checkpoint_dir))
    networks = towers(reference, spec.output_size, checked)
    report = [export_tower(args.output_dir, name, tower) for name, tower in networks.items()]
    dim = int(reference.model.config.projection_dim)
    set_dims(args.output_dir, spec.output_size, dim)
    formats_used = [place_tower(args, name, tower) for name, tower in networks.items()]
    summary = (
        f"exported {origin} -> {', '.join(formats_used)} in {time.monotonic() - started:.1f} s; D = {dim}; "
        f"on {len(checked.pictures)} pictures and {len(checked.texts)} texts vs transformers: pixel_values max |diff| "
        f"{checked.pixel_diff:.1e}, token ids identical; " + "; ".join(report)
    )
    return done(args, started, summary)


if __name__ == "__main__":
    sys.exit(main())
