"""vit (image_decode -> vit_preprocess -> vit_model, ONNX) and vit_python (one
Python model with transformers) against transformers itself on the same
weights and bytes: `PIL.Image.open` -> the checkpoint's ViTImageProcessor
(do_convert_rgb=True: transparency over white, grey to RGB) -> ViTModel.
last_hidden_state within 1e-4 on every picture, over HTTP and gRPC. (Bad
input, batching, several pictures per request: tests/test_contracts.py.)"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from triton_helpers import grpc_fire_all, make_inputs

from clients.common import encoded_bytes_tensor
from export.vit import SEEDED_CONFIG, serving_checkpoint_dir
from pipelines.vit import OUTPUT_NAME
from runtime.paths import MODEL_REPOSITORY, checkpoint_dir
from testsets import images as testset

TOLERANCE = 1e-4
MODELS = ("vit", "vit_python")


def request(module, data: bytes) -> list:
    return make_inputs(module, {"input_image": encoded_bytes_tensor(data)[None]})


@pytest.fixture(scope="module")
def samples():
    return testset.photo_samples()


@pytest.fixture(scope="module")
def reference(samples):
    """transformers on the bytes, as a user of the checkpoint would call it."""
    import torch
    from transformers import AutoImageProcessor, ViTModel

    processor = AutoImageProcessor.from_pretrained(str(checkpoint_dir("vit")))
    model = ViTModel.from_pretrained(str(checkpoint_dir("vit"))).eval()
    out = []
    for sample in samples:
        pixels = processor(images=[Image.open(io.BytesIO(sample.data))], do_convert_rgb=True, return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            out.append(model(pixel_values=pixels).last_hidden_state[0].numpy())
    return out


def check(samples, reference, served, model: str) -> None:
    worst = 0.0
    for sample, expected, got in zip(samples, reference, served):
        assert got.shape == expected.shape and got.dtype == np.float32, (sample.name, got.shape)
        diff = float(np.abs(got - expected).max())
        assert diff <= TOLERANCE, f"{model} {sample.name}: max |diff| {diff}"
        worst = max(worst, diff)
    print(f"\n{model} vs transformers on {len(samples)} pictures: max |diff| {worst:.2e} (tolerance {TOLERANCE:g})")


def test_serving_the_exported_checkpoint():
    served = serving_checkpoint_dir(MODEL_REPOSITORY)
    for name in ("config.json", "preprocessor_config.json"):
        assert (served / name).read_bytes() == (checkpoint_dir("vit") / name).read_bytes()
    preprocess = MODEL_REPOSITORY / "vit_preprocess" / "1" / "preprocessor_config.json"
    assert preprocess.read_bytes() == (checkpoint_dir("vit") / "preprocessor_config.json").read_bytes()


@pytest.mark.parametrize("model", MODELS)
def test_grpc_matches_transformers(grpc_client, samples, reference, model):
    answers = grpc_fire_all(grpc_client, model, [request(grpcclient, s.data) for s in samples])
    served = []
    for sample, (result, error, _) in zip(samples, answers):
        assert error is None, f"{sample.name}: {error}"
        served.append(result.as_numpy(OUTPUT_NAME)[0])
    check(samples, reference, served, model)


@pytest.mark.parametrize("model", MODELS)
def test_http_matches_transformers(http_client, samples, reference, model):
    served = [http_client.infer(model, request(httpclient, s.data)).as_numpy(OUTPUT_NAME)[0] for s in samples[:6]]
    check(samples[:6], reference[:6], served, model)


def test_shape_follows_the_exported_checkpoint(http_client, samples):
    """[1, patches + 1, hidden]: [1, 197, 192] for the default seeded ViT-Tiny/16."""
    config = json.loads((checkpoint_dir("vit") / "config.json").read_text())
    out = http_client.infer("vit", request(httpclient, samples[0].data)).as_numpy(OUTPUT_NAME)
    patches = (config["image_size"] // config["patch_size"]) ** 2
    assert out.shape == (1, patches + 1, config["hidden_size"])
    if (config["hidden_size"], config["image_size"]) == (SEEDED_CONFIG["hidden_size"], SEEDED_CONFIG["image_size"]):
        assert out.shape == (1, 197, 192)
