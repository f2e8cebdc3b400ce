"""ViT feature extraction, the seed's Hugging Face example served two ways:

- `vit_python`: one Python model running transformers' image processor and
  the torch `ViTModel` (what the tutorial deploys first);
- `vit`: an ensemble `image_decode` -> `vit_preprocess` (this repository's
  batched preprocessing, `pipelines.image.hf_processor`) -> `vit_model` (the
  ONNX export, or a TensorRT plan where a GPU is).

Both answer `last_hidden_state` [tokens, hidden] per picture (197 x 768 for
ViT-Base/16 at 224 px).

Checkpoints: `python export/vit.py --source PATH_OR_NAME` takes any ViT
checkpoint; without it the export builds `SEEDED_CONFIG` with seeded random
weights (no hub here). The checkpoint used is kept in `checkpoint_dir()`,
the reference for tests and benchmarks, and copied into vit_python's
version folder, which serves it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from pipelines.image.hf_processor import reference_pixel_values
from pipelines.runtime.distribution import REPO_ROOT

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
INPUT_NAME = "pixel_values"
OUTPUT_NAME = "last_hidden_state"
CHECKPOINT_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")


def checkpoint_dir(root: Path = REPO_ROOT) -> Path:
    """The checkpoint the export used (reference weights and processor)."""
    return Path(root) / "checkpoints" / "vit"


def serving_checkpoint_dir(repository: Path) -> Path:
    """The copy vit_python serves."""
    return Path(repository) / "vit_python" / "1" / "checkpoint"


def seeded_checkpoint(target: Path, seed: int = SEED) -> Path:
    """Write a ViTModel of SEEDED_CONFIG with weights drawn after
    torch.manual_seed(seed), and the default ViT image processor."""
    import torch
    from transformers import ViTConfig, ViTModel
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    torch.manual_seed(seed)
    model = ViTModel(ViTConfig(**SEEDED_CONFIG)).eval()
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(target))
    ViTImageProcessorPil().save_pretrained(str(target))
    return target


def copy_checkpoint(source: Path, target: Path) -> Path:
    """The files a ViT checkpoint needs, copied (nothing else of a hub snapshot)."""
    target.mkdir(parents=True, exist_ok=True)
    missing = [name for name in CHECKPOINT_FILES if not (Path(source) / name).exists()]
    if "model.safetensors" in missing and (Path(source) / "pytorch_model.bin").exists():
        missing.remove("model.safetensors")
        shutil.copy2(Path(source) / "pytorch_model.bin", target / "pytorch_model.bin")
    if missing:
        raise FileNotFoundError(f"{source} is not a ViT checkpoint with an image processor: {missing} missing")
    for name in CHECKPOINT_FILES:
        if (Path(source) / name).exists():
            shutil.copy2(Path(source) / name, target / name)
    return target


def load_processor(checkpoint: Path):
    """transformers' own image processor of the checkpoint (the PIL backend
    here: there is no torchvision)."""
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(str(checkpoint))


class TorchViT:
    """transformers' processor + ViTModel in this process: what vit_python
    serves, and the reference the tests compare both served models with.
    Pictures are RGB uint8 HxWx3 (`pipelines.image.decode`, mode "rgb")."""

    def __init__(self, checkpoint: Path | str, threads: int | None = None):
        import torch
        from transformers import ViTModel

        if threads:
            torch.set_num_threads(threads)
        self.processor = load_processor(Path(checkpoint))
        self.model = ViTModel.from_pretrained(str(checkpoint)).eval()

    def pixel_values(self, images: Sequence) -> np.ndarray:
        return reference_pixel_values(self.processor, images)

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """[N, tokens, hidden] float32 for N pictures, one forward pass."""
        import torch

        pixels = torch.from_numpy(np.ascontiguousarray(self.pixel_values(images), dtype=np.float32))
        with torch.inference_mode():
            return self.model(pixel_values=pixels).last_hidden_state.numpy()
