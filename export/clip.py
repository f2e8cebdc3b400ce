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
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from export.common.onnx_files import move_onnx
from export.common.cli import ExportArguments, export_onnx, fill_checkpoint, finish
from export.common.clip_tokenizer import CONTEXT_LENGTH, TOKENIZER_FILES, VOCAB_SIZE, build_tokenizer
from export.common.formats import Profile, place_network, run_tensorrt_plan
from pipelines.image import hf_processor
from pipelines.image.decode import decode_image
from pipelines.text.tokenizer import SentenceTokenizer
from lint.pbtxt import edit_config
from references.clip import OUTPUT_NAME, TEXT_INPUTS, TorchCLIP
from testsets.images import photo_samples
from testsets.sentences import varied_sentences

IMAGE_INPUT = "pixel_values"
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


def seeded_checkpoint(target: Path, seed: int = SEED) -> Path:
    """A CLIPModel of SEEDED_CONFIG with weights drawn after
    torch.manual_seed(seed), CLIP's image processor and the real tokenizer."""
    from transformers import CLIPConfig, CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(**SEEDED_CONFIG)).eval()
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(target))
    CLIPImageProcessorPil().save_pretrained(str(target))
    build_tokenizer(target)
    return target


def copy_checkpoint(source: Path, target: Path) -> Path:
    """A CLIP checkpoint's files (weights, processor, tokenizer) into `target`;
    a checkpoint without tokenizer.json gets the rebuilt tokenizer."""
    source = Path(source)
    target.mkdir(parents=True, exist_ok=True)
    weights = "model.safetensors" if (source / "model.safetensors").exists() else "pytorch_model.bin"
    for name in ("config.json", weights, "preprocessor_config.json"):
        if not (source / name).exists():
            raise FileNotFoundError(f"{source} is not a CLIP checkpoint: {name} is missing")
        shutil.copy2(source / name, target / name)
    if (source / "tokenizer.json").exists():
        for name in TOKENIZER_FILES:
            if (source / name).exists():
                shutil.copy2(source / name, target / name)
    else:
        build_tokenizer(target)
    return target


MAX_ABS_DIFF = 1e-4
MIN_COSINE = 0.99999
MIN_COSINE_FP16 = 0.999


class ImageTower(torch.nn.Module):
    """get_image_features (vision tower + projection), L2-normalised."""

    def __init__(self, clip):
        super().__init__()
        self.clip = clip

    def forward(self, pixel_values):
        features = self.clip.get_image_features(pixel_values=pixel_values).pooler_output
        return torch.nn.functional.normalize(features, p=2.0, dim=-1)


class TextTower(torch.nn.Module):
    """get_text_features (text tower + projection), L2-normalised."""

    def __init__(self, clip):
        super().__init__()
        self.clip = clip

    def forward(self, input_ids, attention_mask):
        features = self.clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return torch.nn.functional.normalize(features, p=2.0, dim=-1)


def compare(served: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    return float(np.abs(served - expected).max()), float((served * expected).sum(axis=1).min())


def check_texts() -> list[str]:
    long_text = " ".join(["a very long caption that goes on"] * 30)
    return ["", "   ", "a photo of a cat", "Ein Foto eines Hundes", "一张猫的照片", "🚀 rocket launch", long_text] + varied_sentences(25)


def main(argv=None) -> int:
    args = ExportArguments("clip", __doc__.splitlines()[0], "a seeded small CLIP", checkpoint=True).parse(argv)
    formats = args.formats
    started = time.monotonic()
    repo = args.output_dir
    checkpoint = args.checkpoint_dir
    origin = fill_checkpoint(args.source, checkpoint, seeded_checkpoint, copy_checkpoint, "seeded CLIP (export/clip.py SEEDED_CONFIG)")
    reference = TorchCLIP(checkpoint)
    spec = hf_processor.ImageProcessorSpec.from_file(checkpoint)
    height, width = spec.output_size
    dim = int(reference.model.config.projection_dim)

    tokenizer_dir = repo / "clip_tokenizer" / "1"
    tokenizer_dir.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(checkpoint / name, tokenizer_dir / name)
    preprocess_dir = repo / "clip_image_preprocess" / "1"
    preprocess_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoint / hf_processor.PREPROCESSOR_CONFIG, preprocess_dir / hf_processor.PREPROCESSOR_CONFIG)

    # the served pre-processing equals transformers' before any network runs
    pictures = [decode_image(sample.data, "rgb") for sample in photo_samples()[:8]]
    pixel_values = hf_processor.preprocess(pictures, spec)
    pixel_diff = float(np.abs(pixel_values - reference.pixel_values(pictures)).max())
    texts = check_texts()
    served_tokens = SentenceTokenizer(tokenizer_dir)
    if served_tokens.max_length != CONTEXT_LENGTH:
        print(f"export check failed: tokenizer truncates at {served_tokens.max_length}, not {CONTEXT_LENGTH}", file=sys.stderr)
        return 1
    ours = served_tokens(texts).as_dict()
    theirs = reference.tokenize(texts)
    if pixel_diff > 1e-6 or any(not np.array_equal(ours[name], theirs[name]) for name in TEXT_INPUTS):
        print(f"export check failed: preprocessing differs from transformers (pixels {pixel_diff:g}, or token ids)", file=sys.stderr)
        return 1

    import onnxruntime as ort

    expected = {"clip_image_encoder": reference.embed_images(pictures), "clip_text_encoder": reference.embed_texts(texts)}
    feeds = {"clip_image_encoder": {IMAGE_INPUT: pixel_values}, "clip_text_encoder": theirs}
    towers = {"clip_image_encoder": ImageTower(reference.model), "clip_text_encoder": TextTower(reference.model)}
    dynamic = {
        "clip_image_encoder": {IMAGE_INPUT: {0: "batch"}},
        "clip_text_encoder": {name: {0: "batch", 1: "sequence"} for name in TEXT_INPUTS},
    }
    samples = {
        "clip_image_encoder": {IMAGE_INPUT: np.zeros((2, 3, height, width), np.float32)},
        "clip_text_encoder": {name: array[:2, :8] for name, array in theirs.items()},
    }
    report = []
    for model_name, tower in towers.items():
        onnx_path = repo / model_name / "1" / "model.onnx"
        with tempfile.TemporaryDirectory() as scratch:
            staged = Path(scratch) / "model.onnx"
            export_onnx(tower, samples[model_name], staged, OUTPUT_NAME, dynamic[model_name])
            session = ort.InferenceSession(str(staged), providers=["CPUExecutionProvider"])
            served = session.run([OUTPUT_NAME], feeds[model_name])[0]
            diff, cosine = compare(served, expected[model_name])
            report.append(f"{model_name}: max |diff| {diff:.1e}, min cosine {cosine:.7f}")
            if diff > MAX_ABS_DIFF or cosine < MIN_COSINE:
                print(f"export check failed: {report[-1]} (limits {MAX_ABS_DIFF:g}, {MIN_COSINE})", file=sys.stderr)
                return 1
            move_onnx(staged, onnx_path)

    pixel_dims = [3, height, width]
    edit_config(repo / "clip_image_preprocess" / "config.pbtxt", dims={IMAGE_INPUT: pixel_dims})
    edit_config(repo / "clip_image_encoder" / "config.pbtxt", dims={IMAGE_INPUT: pixel_dims, OUTPUT_NAME: [dim]})
    for name in ("clip_text_encoder", "clip_image_embedding", "clip_text_embedding"):
        edit_config(repo / name / "config.pbtxt", dims={OUTPUT_NAME: [dim]})

    profiles = {
        "clip_image_encoder": {IMAGE_INPUT: Profile((1, 3, height, width), (4, 3, height, width), (16, 3, height, width))},
        "clip_text_encoder": {name: Profile((1, 1), (8, 16), (64, CONTEXT_LENGTH)) for name in TEXT_INPUTS},
    }
    formats_used = []
    for model_name in towers:

        def check_plan(plan_path: Path, model_name=model_name) -> None:
            got = run_tensorrt_plan(plan_path, feeds[model_name], [OUTPUT_NAME])[OUTPUT_NAME]
            _, cosine = compare(got, expected[model_name])
            limit = MIN_COSINE_FP16 if args.fp16 else MIN_COSINE
            print(f"{model_name}: TensorRT plan vs torch: min cosine {cosine:.6f} (limit {limit})")
            if cosine < limit:
                raise RuntimeError(f"the plan's min cosine with torch is {cosine:.6f} (limit {limit})")

        placement = place_network(
            repo / model_name / "1" / "model.onnx", repo / model_name, formats, profiles[model_name], args.fp16, check_plan
        )
        formats_used.append(f"{model_name} {placement.format}")
    summary = (
        f"exported {origin} -> {', '.join(formats_used)} in {time.monotonic() - started:.1f} s; D = {dim}; "
        f"on {len(pictures)} pictures and {len(texts)} texts vs transformers: pixel_values max |diff| {pixel_diff:.1e}, "
        f"token ids identical; " + "; ".join(report)
    )
    print(summary)
    finish(args, "clip", started, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
