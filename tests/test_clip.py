"""clip_image_embedding and clip_text_embedding against transformers on the
same weights: CLIPImageProcessor on `PIL.Image.open(bytes)` and
CLIPTokenizer(padding=True, truncation at 77) into CLIPModel's
get_image_features / get_text_features, L2-normalised. Cosine >= 0.9999 for
every picture (photos, generated, grey, RGBA, palette, 1x1) and every text
(empty, whitespace, accented, CJK, emoji, longer than 77 tokens), over HTTP
and gRPC. (Bad input, batching, several items per request:
tests/test_contracts.py.)"""

from __future__ import annotations

import io

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from triton_helpers import grpc_fire_all, make_inputs
from tritonclient.utils import InferenceServerException

from clients.common import encoded_bytes_tensor
from export.common.clip_tokenizer import CONTEXT_LENGTH
from runtime.paths import MODEL_REPOSITORY, checkpoint_dir
from references.clip import OUTPUT_NAME
from testsets import images as testset
from testsets.sentences import varied_sentences

MIN_COSINE = 0.9999
IMAGE_MODEL, TEXT_MODEL = "clip_image_embedding", "clip_text_embedding"


def texts() -> list[str]:
    long_caption = "a photograph of a red bicycle leaning against a stone wall in the old town " * 8
    return ["", "   ", "a photo of a cat", "Ein Hund im Schnee, café crème", "一只猫坐在窗台上", "🚀🌕 to the moon", long_caption] + varied_sentences(
        60
    )


def text_tensor(batch: list[str]) -> np.ndarray:
    return np.array([[t.encode("utf-8")] for t in batch], dtype=np.object_)


def image_request(module, data: bytes) -> list:
    return make_inputs(module, {"input_image": encoded_bytes_tensor(data)[None]})


@pytest.fixture(scope="module")
def clip():
    import torch
    from transformers import AutoImageProcessor, CLIPModel, CLIPTokenizer

    model = CLIPModel.from_pretrained(str(checkpoint_dir("clip"))).eval()
    return model, AutoImageProcessor.from_pretrained(str(checkpoint_dir("clip"))), CLIPTokenizer.from_pretrained(str(checkpoint_dir("clip"))), torch


def normalized(features) -> np.ndarray:
    return (features / features.norm(p=2, dim=-1, keepdim=True)).numpy()


@pytest.fixture(scope="module")
def samples():
    return testset.photo_samples()


@pytest.fixture(scope="module")
def image_reference(clip, samples):
    model, processor, _, torch = clip
    out = []
    for sample in samples:
        pixels = processor(images=[Image.open(io.BytesIO(sample.data))], return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            out.append(normalized(model.get_image_features(pixel_values=pixels).pooler_output)[0])
    return out


@pytest.fixture(scope="module")
def text_reference(clip):
    model, _, tokenizer, torch = clip
    batch = texts()
    encoded = tokenizer(batch, padding=True, truncation=True, max_length=CONTEXT_LENGTH, return_tensors="pt")
    assert encoded["input_ids"].shape[1] == CONTEXT_LENGTH  # the long caption was truncated at 77
    with torch.inference_mode():
        return normalized(model.get_text_features(**encoded).pooler_output)


def check_cosines(names, served, expected, what: str) -> None:
    cosines = []
    for name, got, want in zip(names, served, expected):
        assert got.shape == want.shape and got.dtype == np.float32, (name, got.shape)
        assert abs(float(np.linalg.norm(got)) - 1.0) < 1e-5, name
        cosines.append(float(got @ want))
        assert cosines[-1] >= MIN_COSINE, f"{what} {name!r}: cosine {cosines[-1]}"
    print(f"\n{what} vs transformers on {len(cosines)} inputs: min cosine {min(cosines):.7f} (limit {MIN_COSINE})")


def test_tokenizer_files_come_from_the_export():
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (MODEL_REPOSITORY / "clip_tokenizer" / "1" / name).read_bytes() == (checkpoint_dir("clip") / name).read_bytes()


def test_images_grpc(grpc_client, samples, image_reference):
    answers = grpc_fire_all(grpc_client, IMAGE_MODEL, [image_request(grpcclient, s.data) for s in samples])
    served = []
    for sample, (result, error, _) in zip(samples, answers):
        assert error is None, f"{sample.name}: {error}"
        served.append(result.as_numpy(OUTPUT_NAME)[0])
    check_cosines([s.name for s in samples], served, image_reference, IMAGE_MODEL)


def test_images_http(http_client, samples, image_reference):
    served = [http_client.infer(IMAGE_MODEL, image_request(httpclient, s.data)).as_numpy(OUTPUT_NAME)[0] for s in samples[:5]]
    check_cosines([s.name for s in samples[:5]], served, image_reference[:5], IMAGE_MODEL)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_texts_in_requests_of_several(protocol, http_client, grpc_client, text_reference):
    module, client = (httpclient, http_client) if protocol == "http" else (grpcclient, grpc_client)
    batch = texts()
    served = []
    for start in range(0, len(batch), 7):  # requests of up to 7 texts each
        part = batch[start : start + 7]
        out = client.infer(TEXT_MODEL, make_inputs(module, {"text": text_tensor(part)})).as_numpy(OUTPUT_NAME)
        assert out.shape == (len(part), text_reference.shape[1])
        served += list(out)
    check_cosines(batch, served, text_reference, TEXT_MODEL)


def test_too_thin_picture_is_refused(http_client):
    thin = testset.encode(Image.new("RGB", (3300, 100), (90, 120, 200)), "PNG")
    with pytest.raises(InferenceServerException, match="more than 32 times apart"):
        http_client.infer(IMAGE_MODEL, image_request(httpclient, thin))


def test_text_batch_over_the_limit_is_refused(http_client):
    with pytest.raises(InferenceServerException, match="batch"):
        http_client.infer(TEXT_MODEL, make_inputs(httpclient, {"text": text_tensor(["x"] * 65)}))
