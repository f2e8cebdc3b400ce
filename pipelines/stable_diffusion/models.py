"""The model code of `stable_diffusion` (one response per request) and
`stable_diffusion_stream` (decoupled: a response per step, previews, then
the picture with the FINAL flag; stops when the client cancels). Same code,
chosen by the config's model_transaction_policy."""

from __future__ import annotations

from functools import partial

import numpy as np

from pipelines.serving.partition import per_item
from pipelines.serving.python_model import ModelContext, RequestTensors, Stream, is_decoupled
from pipelines.serving.tensors import RequestError
from pipelines.stable_diffusion.pipeline import BlsNetworks, Settings, StableDiffusion

OUTPUT = "generated_image"


def make_pipeline(context: ModelContext, networks=None) -> StableDiffusion:
    # torch only where the pipeline runs (the scheduler's loop): the serving
    # requirements leave it out
    import torch

    # the loop's own torch work is tiny; the networks' threads are elsewhere
    torch.set_num_threads(int(context.parameter("torch_threads", "1")))
    settings = Settings.from_parameters(context.parameter)
    if settings.unet_split < 1:
        raise ValueError(f"parameter unet_split must be >= 1, got {settings.unet_split}")
    return StableDiffusion(context.version_dir, networks or BlsNetworks(context.bls, settings.unet_split), settings)


def generate(pipeline: StableDiffusion, tensors: RequestTensors) -> dict[str, np.ndarray]:
    """One request's pictures (max_batch_size 0: one request per execute;
    the instances run side by side)."""
    image = pipeline.generate(pipeline.parse(tensors), cancelled=tensors.cancelled)
    if image is None:
        raise RequestError("request cancelled")
    return {OUTPUT: image}


def send_step(sink: Stream, step: int, preview: np.ndarray | None) -> None:
    answer = {"step": np.array([step], np.int32)}
    if preview is not None:
        answer["preview"] = preview
    sink.send(answer)


def generate_stream(pipeline: StableDiffusion, tensors: RequestTensors, sink: Stream) -> dict[str, np.ndarray] | None:
    """A decoupled request: each step (and its preview) sent as it ends,
    the picture returned for the FINAL response (None once cancelled)."""
    image = pipeline.generate(pipeline.parse(tensors), partial(send_step, sink), sink.cancelled)
    return None if image is None else {OUTPUT: image}


def make_stable_diffusion(context: ModelContext):
    pipeline = make_pipeline(context)
    if is_decoupled(context.config):
        return partial(generate_stream, pipeline)
    return per_item(partial(generate, pipeline))
