"""`vit_python` (its model.py is an adapter): encoded pictures -> decode
(rule "rgb") -> transformers' image processor + torch ViTModel, one forward
pass over every picture of an execute, on the checkpoint the export copied
into the version folder."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from pipelines.image.hf_processor import reference_pixel_values
from pipelines.image.models import DECODE_INPUT, decode_rows
from pipelines.serving.batching import alone_on_failure, items_together, prepared
from pipelines.serving.python_model import ModelContext, RequestTensors
from pipelines.vit import OUTPUT_NAME

CHECKPOINT_DIR = "checkpoint"


class TorchViT:
    """transformers' processor + ViTModel in this process: what vit_python
    serves, and the reference the tests compare both served models with.
    Pictures are RGB uint8 HxWx3 (`pipelines.image.decode`, rule "rgb")."""

    def __init__(self, checkpoint: Path | str, threads: int | None = None):
        # torch and transformers only where this runs: the serving
        # requirements (requirements/serve.txt) leave them out
        import torch
        from transformers import AutoImageProcessor, ViTModel  # likewise

        if threads:
            torch.set_num_threads(threads)
        # the PIL backend here: there is no torchvision
        self.processor = AutoImageProcessor.from_pretrained(str(checkpoint))
        self.model = ViTModel.from_pretrained(str(checkpoint)).eval()

    def pixel_values(self, images: Sequence) -> np.ndarray:
        return reference_pixel_values(self.processor, images)

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """[N, tokens, hidden] float32 for N pictures, one forward pass."""
        import torch  # as in __init__

        pixels = torch.from_numpy(np.ascontiguousarray(self.pixel_values(images), dtype=np.float32))
        with torch.inference_mode():
            return self.model(pixel_values=pixels).last_hidden_state.numpy()


def decode_pictures(tensors: RequestTensors) -> list[np.ndarray]:
    return list(decode_rows(tensors[DECODE_INPUT], ("rgb",))["rgb"])


def make_vit_python(context: ModelContext):
    checkpoint = context.file(CHECKPOINT_DIR)
    threads = context.parameter("torch_threads")
    model = TorchViT(checkpoint, threads=int(threads) if threads else None)

    def forward(pictures: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {OUTPUT_NAME: np.ascontiguousarray(model(pictures))}

    # a picture the processor refuses fails the joint pass: then each request
    # alone, so that the others are served
    return prepared(decode_pictures, alone_on_failure(items_together(forward)))
