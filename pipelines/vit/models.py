"""Batch function of `vit_python` (its model.py is an adapter): encoded
pictures -> decode (mode "rgb") -> transformers' image processor + torch
ViTModel, one forward pass over every picture of an execute."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.image.models import DECODE_INPUT, decode_rows
from pipelines.serving.onnx_model import config_parameter
from pipelines.serving.tensors import RequestError
from pipelines.vit import OUTPUT_NAME, TorchViT


def make_vit_python(config: dict, args: dict):
    checkpoint = Path(args["model_repository"]) / str(args["model_version"]) / "checkpoint"
    if not (checkpoint / "config.json").exists():
        raise FileNotFoundError(f"{checkpoint} has no ViT checkpoint (run `make export`)")
    threads = config_parameter(config, "torch_threads")
    model = TorchViT(checkpoint, threads=int(threads) if threads else None)

    def process(requests):
        answers: list = [None] * len(requests)
        pictures, owners = [], []
        for index, tensors in enumerate(requests):
            try:
                decoded = decode_rows(tensors[DECODE_INPUT], ("rgb",))["rgb"]
            except RequestError as error:
                answers[index] = error
                continue
            pictures += list(decoded)
            owners.append((index, len(decoded)))
        if not pictures:
            return answers
        try:
            hidden = model(pictures)
        except Exception:  # one picture the processor refuses: find it, serve the others
            hidden = None
        start = 0
        for index, count in owners:
            mine = pictures[start : start + count]
            try:
                out = hidden[start : start + count] if hidden is not None else model(mine)
                answers[index] = {OUTPUT_NAME: np.ascontiguousarray(out)}
            except Exception as error:
                answers[index] = RequestError(f"input '{DECODE_INPUT}': {type(error).__name__}: {error}")
            start += count
        return answers

    return process
