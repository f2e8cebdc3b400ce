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
from pipelines.serving.partition import answer_each, per_item
from pipelines.serving.python_model import ModelContext, RequestTensors
from pipelines.vit import OUTPUT_NAME

CHECKPOINT_DIR = "checkpoint"


class TorchViT:
    """transformers' processor + ViTModel in this process: what vit_python
    serves, and the reference the tests compare both served models with.
    Pictures are RGB uint8 HxWx3 (`pipelines.image.decode`, rule "rgb")."""

    def __init__(self, checkpoint: Path | str, threads: int | None = None):
        import torch
        from transformers import AutoImageProcessor, ViTModel

        if threads:
            torch.set_num_threads(threads)
        # the PIL backend here: there is no torchvision
        self.processor = AutoImageProcessor.from_pretrained(str(checkpoint))
        self.model = ViTModel.from_pretrained(str(checkpoint)).eval()

    def pixel_values(self, images: Sequence) -> np.ndarray:
        return reference_pixel_values(self.processor, images)

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """[N, tokens, hidden] float32 for N pictures, one forward pass."""
        import torch

        pixels = torch.from_numpy(np.ascontiguousarray(self.pixel_values(images), dtype=np.float32))
        with torch.inference_mode():
            return self.model(pixel_values=pixels).last_hidden_state.numpy()


def make_vit_python(context: ModelContext):
    checkpoint = context.file(CHECKPOINT_DIR)
    threads = context.parameter("torch_threads")
    model = TorchViT(checkpoint, threads=int(threads) if threads else None)

    def decode(tensors: RequestTensors) -> list[np.ndarray]:
        return list(decode_rows(tensors[DECODE_INPUT], ("rgb",))["rgb"])

    def one_request(pictures: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {OUTPUT_NAME: np.ascontiguousarray(model(pictures))}

    def run(pictures_per_request: list[list[np.ndarray]]) -> list:
        try:
            hidden = model([p for pictures in pictures_per_request for p in pictures])
        except Exception:  # a picture the processor refuses: run per request to find it, serve the others
            return per_item(one_request, context=f"input '{DECODE_INPUT}'")(pictures_per_request)
        bounds = np.cumsum([0] + [len(pictures) for pictures in pictures_per_request])
        return [{OUTPUT_NAME: np.ascontiguousarray(hidden[a:b])} for a, b in zip(bounds[:-1], bounds[1:])]

    def process(requests: list[RequestTensors]) -> list:
        return answer_each(requests, decode, run)

    return process
