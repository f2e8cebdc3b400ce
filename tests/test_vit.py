"""vit (image_decode -> vit_preprocess -> vit_model, ONNX) and vit_python (one
Python model with transformers) against transformers itself on the same
weights and bytes: `PIL.Image.open` -> the checkpoint's ViTImageProcessor
(do_convert_rgb=True: transparency over white, grey to RGB) -> ViTModel.
last_hidden_state within 1e-4 on every picture, over HTTP and gRPC; bad
pictures fail alone; concurrent requests are batched."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from triton_helpers import counts_since, grpc_fire_all, make_inputs, settled_counts
from tritonclient.utils import InferenceServerException

from pipelines.client import encoded_bytes_tensor
from pipelines.image import testset
from pipelines.runtime.server import DEFAULT_REPOSITORY
from pipelines.vit import (
    OUTPUT_NAME,
    SEEDED_CONFIG,
    checkpoint_dir,
    serving_checkpoint_dir,
)

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

    processor = AutoImageProcessor.from_pretrained(str(checkpoint_dir()))
    model = ViTModel.from_pretrained(str(checkpoint_dir())).eval()
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
    served = serving_checkpoint_dir(DEFAULT_REPOSITORY)
    for name in ("config.json", "preprocessor_config.json"):
        assert (served / name).read_bytes() == (checkpoint_dir() / name).read_bytes()
    preprocess = DEFAULT_REPOSITORY / "vit_preprocess" / "1" / "preprocessor_config.json"
    assert preprocess.read_bytes() == (checkpoint_dir() / "preprocessor_config.json").read_bytes()


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


def test_default_checkpoint_shape(http_client, samples):
    if not (checkpoint_dir() / "config.json").read_text().count(f'"hidden_size": {SEEDED_CONFIG["hidden_size"]}'):
        pytest.skip("exported from another checkpoint (--source)")
    out = http_client.infer("vit", request(httpclient, samples[0].data)).as_numpy(OUTPUT_NAME)
    patches = (SEEDED_CONFIG["image_size"] // SEEDED_CONFIG["patch_size"]) ** 2
    assert out.shape == (1, patches + 1, SEEDED_CONFIG["hidden_size"])  # [1, 197, 192]


@pytest.mark.parametrize("model", MODELS)
def test_concurrent_requests_are_batched(grpc_client, http_client, samples, reference, model):
    counted = "vit_model" if model == "vit" else "vit_python"
    before = settled_counts(http_client, counted)
    picks = [i % len(samples) for i in range(24)]
    answers = grpc_fire_all(grpc_client, model, [request(grpcclient, samples[i].data) for i in picks])
    for i, (result, error, _) in zip(picks, answers):
        assert error is None, error
        np.testing.assert_allclose(result.as_numpy(OUTPUT_NAME)[0], reference[i], atol=TOLERANCE)
    inferences, executions = counts_since(http_client, counted, before, len(picks))
    print(f"\n{counted}: {inferences} pictures in {executions} executions")
    assert inferences == len(picks) and executions < inferences


BAD = testset.invalid_samples()


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("name,data,fragment", BAD, ids=[b[0] for b in BAD])
def test_bad_picture_fails_alone(grpc_client, samples, reference, model, name, data, fragment):
    good = [0, 7]
    requests = [request(grpcclient, samples[good[0]].data), request(grpcclient, data), request(grpcclient, samples[good[1]].data)]
    answers = grpc_fire_all(grpc_client, model, requests)
    error = answers[1][1]
    assert error is not None and fragment in str(error) and "input_image" in str(error), (name, error)
    for i, (result, err, _) in zip(good, (answers[0], answers[2])):
        assert err is None, err
        np.testing.assert_allclose(result.as_numpy(OUTPUT_NAME)[0], reference[i], atol=TOLERANCE)


@pytest.mark.parametrize("model", MODELS)
def test_wrong_dtype_is_refused(http_client, model):
    with pytest.raises(InferenceServerException, match="input_image"):
        http_client.infer(model, make_inputs(httpclient, {"input_image": np.zeros((1, 16), np.float32)}))


def test_two_pictures_in_one_request(http_client, samples, reference):
    # B > 1 pictures per request works when they have the same byte length
    tensor = np.stack([encoded_bytes_tensor(samples[2].data)] * 2)
    for model in MODELS:
        out = http_client.infer(model, make_inputs(httpclient, {"input_image": tensor})).as_numpy(OUTPUT_NAME)
        assert out.shape[0] == 2
        np.testing.assert_allclose(out, np.stack([reference[2]] * 2), atol=TOLERANCE)
