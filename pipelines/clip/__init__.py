"""CLIP image and text embeddings (the Towhee seed's text-to-image search).

Served as two ensembles:

- `clip_image_embedding`: `image_decode` (RGB) -> `clip_image_preprocess`
  (CLIPImageProcessor: short side to 224 bicubic, centre crop, CLIP mean/std;
  `pipelines.image.hf_processor`) -> `clip_image_encoder` (vision tower +
  projection + L2 normalisation, ONNX);
- `clip_text_embedding`: `clip_tokenizer` (CLIP's BPE through `tokenizers`,
  truncation at 77, padding to the longest text of the request with the end
  token, as CLIPTokenizer with padding=True) -> `clip_text_encoder` (text
  tower + projection + L2 normalisation, ONNX).

Both return `embedding` FP32 [D], D the projection width (512 for ViT-B/32).

The tokenizer is always the real one: its 49408-token vocabulary and 48894
merges are rebuilt from the BPE merges file that open_clip ships
(`bpe_simple_vocab_16e6.txt.gz`), in the order OpenAI's CLIP builds them,
then saved by transformers' CLIPTokenizer. The weights come from
`export/clip.py --source PATH_OR_NAME`, or, without a hub, a CLIPModel of
`SEEDED_CONFIG` with seeded random weights."""

from __future__ import annotations

import gzip
import importlib.util
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from pipelines.image.hf_processor import reference_pixel_values
from pipelines.runtime.distribution import REPO_ROOT
from pipelines.text.minilm import l2_normalize

CONTEXT_LENGTH = 77
VOCAB_SIZE = 49408
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
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
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
IMAGE_INPUT, TEXT_INPUTS, OUTPUT_NAME = "pixel_values", ("input_ids", "attention_mask"), "embedding"


def checkpoint_dir(root: Path = REPO_ROOT) -> Path:
    """The checkpoint the export used: reference weights, processor, tokenizer."""
    return Path(root) / "checkpoints" / "clip"


def bpe_merges_path() -> Path:
    """open_clip's BPE merges file (found without importing open_clip, which
    would import torchvision)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("open_clip is not installed: pip install --no-deps open-clip-torch (requirements/nodeps.txt)")
    path = Path(next(iter(spec.submodule_search_locations))) / BPE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed open_clip package")
    return path


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible byte -> printable character table, in its
    own order (printable bytes first, the others mapped above 255)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def vocabulary(merges_path: Path | None = None) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary and merges as OpenAI's SimpleTokenizer builds them:
    the 256 byte characters, the same with '</w>', one token per merge (the
    first 48894 merge lines after the header), then the start and end tokens."""
    lines = gzip.open(merges_path or bpe_merges_path()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : VOCAB_SIZE - 256 * 2 - 2 + 1]]
    base = list(bytes_to_unicode().values())
    tokens = base + [c + "</w>" for c in base] + ["".join(m) for m in merges] + [BOS, EOS]
    if len(tokens) != VOCAB_SIZE or len(set(tokens)) != VOCAB_SIZE:
        raise ValueError(f"rebuilt {len(tokens)} tokens ({len(set(tokens))} distinct), expected {VOCAB_SIZE}")
    return {token: index for index, token in enumerate(tokens)}, merges


def build_tokenizer(target: Path):
    """transformers' CLIPTokenizer on the rebuilt vocabulary, saved to
    `target` (tokenizer.json, tokenizer_config.json); returns it."""
    from transformers import CLIPTokenizer

    vocab, merges = vocabulary()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=CONTEXT_LENGTH)
    target.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(target))
    return tokenizer


def seeded_checkpoint(target: Path, seed: int = SEED) -> Path:
    """A CLIPModel of SEEDED_CONFIG with weights drawn after
    torch.manual_seed(seed), CLIP's image processor and the real tokenizer."""
    import torch
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


class TorchCLIP:
    """transformers' CLIP in this process: CLIPImageProcessor, CLIPTokenizer
    (padding=True, truncation at 77) and CLIPModel.get_image_features /
    get_text_features, L2-normalised. The reference of the tests and the
    baselines of the benchmark. Pictures are RGB uint8 HxWx3."""

    def __init__(self, checkpoint: Path | str, threads: int | None = None):
        import torch
        from transformers import AutoImageProcessor, CLIPModel, CLIPTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.processor = AutoImageProcessor.from_pretrained(str(checkpoint))
        self.tokenizer = CLIPTokenizer.from_pretrained(str(checkpoint))
        self.model = CLIPModel.from_pretrained(str(checkpoint)).eval()

    def pixel_values(self, images: Sequence) -> np.ndarray:
        return reference_pixel_values(self.processor, images)

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        encoded = self.tokenizer(list(texts), padding=True, truncation=True, max_length=CONTEXT_LENGTH, return_tensors="np")
        return {name: encoded[name].astype(np.int64) for name in TEXT_INPUTS}

    def embed_images(self, images: Sequence) -> np.ndarray:
        import torch

        pixels = torch.from_numpy(np.ascontiguousarray(self.pixel_values(images), dtype=np.float32))
        with torch.inference_mode():
            features = self.model.get_image_features(pixel_values=pixels).pooler_output
        return l2_normalize(features.numpy())

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        encoded = {name: torch.from_numpy(array) for name, array in self.tokenize(texts).items()}
        with torch.inference_mode():
            features = self.model.get_text_features(**encoded).pooler_output
        return l2_normalize(features.numpy())
