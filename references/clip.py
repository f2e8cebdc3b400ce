"""transformers' own CLIP pipeline in this process: the reference the tests
compare `clip_image_embedding` and `clip_text_embedding` with, and the
baseline of the benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from pipelines.image.hf_processor import reference_pixel_values
from pipelines.text.pooling import l2_normalize

TEXT_INPUTS = ("input_ids", "attention_mask")
OUTPUT_NAME = "embedding"


class TorchCLIP:
    """transformers' CLIP in this process: CLIPImageProcessor, CLIPTokenizer
    (padding=True, truncation at its model_max_length, 77) and CLIPModel.get_image_features /
    get_text_features, L2-normalised. The reference of the tests and the
    baselines of the benchmark. Pictures are RGB uint8 HxWx3."""

    def __init__(self, checkpoint: Path | str, threads: int | None = None):
        # here, not at the top: torch and transformers take seconds to import,
        # and the importers of this module's names (OUTPUT_NAME, TEXT_INPUTS) need neither
        import torch
        from transformers import AutoImageProcessor, CLIPModel, CLIPTokenizer  # likewise

        if threads:
            torch.set_num_threads(threads)
        self.processor = AutoImageProcessor.from_pretrained(str(checkpoint))
        self.tokenizer = CLIPTokenizer.from_pretrained(str(checkpoint))
        self.model = CLIPModel.from_pretrained(str(checkpoint)).eval()

    def pixel_values(self, images: Sequence) -> np.ndarray:
        return reference_pixel_values(self.processor, images)

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        encoded = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.tokenizer.model_max_length, return_tensors="np")
        return {name: encoded[name].astype(np.int64) for name in TEXT_INPUTS}

    def embed_images(self, images: Sequence) -> np.ndarray:
        import torch  # as in __init__

        pixels = torch.from_numpy(np.ascontiguousarray(self.pixel_values(images), dtype=np.float32))
        with torch.inference_mode():
            features = self.model.get_image_features(pixel_values=pixels).pooler_output
        return l2_normalize(features.numpy())

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch  # as in __init__

        encoded = {name: torch.from_numpy(array) for name, array in self.tokenize(texts).items()}
        with torch.inference_mode():
            features = self.model.get_text_features(**encoded).pooler_output
        return l2_normalize(features.numpy())
