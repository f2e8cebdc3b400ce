"""The model code of `stable_diffusion` (one response per request) and
`stable_diffusion_stream` (decoupled: a response per step, previews, then
the picture with the FINAL flag; stops when the client cancels). Same code,
chosen by the config's model_transaction_policy."""

from __future__ import annotations

import numpy as np

from pipelines.serving.python_model import ModelContext, RequestTensors, Stream, is_decoupled
from pipelines.serving.tensors import RequestError
from pipelines.stable_diffusion.pipeline import BlsNetworks, Settings, StableDiffusion

OUTPUT = "generated_image"


def make_pipeline(context: ModelContext, networks=None) -> StableDiffusion:
    import torch

    # the loop's own torch work is tiny; the networks' threads are elsewhere
    torch.set_num_threads(int(context.parameter("torch_threads", "1")))
    settings = Settings.from_parameters(context.parameter)
    if settings.unet_split < 1:
        raise ValueError(f"parameter unet_split must be >= 1, got {settings.unet_split}")
    return StableDiffusion(context.version_dir, networks or BlsNetworks(context.bls, settings.unet_split), settings)


def make_stable_diffusion(context: ModelContext):
    pipeline = make_pipeline(context)

    if is_decoupled(context.config):

        def stream(tensors: RequestTensors, sink: Stream):
            job = pipeline.parse(tensors)

            def on_step(step: int, preview):
                answer = {"step": np.array([step], np.int32)}
                if preview is not None:
                    answer["preview"] = preview
                sink.send(answer)

            image = pipeline.generate(job, on_step, sink.cancelled)
            return None if image is None else {OUTPUT: image}

        return stream

    def process(requests: list[RequestTensors]) -> list:
        answers = []
        for tensors in requests:  # max_batch_size 0: one per execute; instances run side by side
            try:
                image = pipeline.generate(pipeline.parse(tensors), cancelled=tensors.cancelled)
                answers.append(RequestError("request cancelled") if image is None else {OUTPUT: image})
            except Exception as error:  # noqa: BLE001 - that request's answer
                answers.append(error)
        return answers

    return process
