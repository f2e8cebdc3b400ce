"""clip_image_embedding and clip_text_embedding against transformers on the
same weights: CLIPImageProcessor on `PIL.Image.open(bytes)` and
CLIPTokenizer(padding=True, truncation at 77) into CLIPModel's
get_image_features / get_text_features, L2-normalised. Cosine >= 0.9999 for
every picture (photos, generated, grey, RGBA, palette, 1x1) and every text
(empty, whitespace, accented, CJK, emoji, longer than 77 tokens), over HTTP
and gRPC; bad input fails alone."""

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
from pipelines.clip import CONTEXT_LENGTH, OUTPUT_NAME, checkpoint_dir
from pipelines.image import testset
from pipelines.runtime.server import DEFAULT_REPOSITORY
from pipelines.text.sentences import varied_sentences

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

    model = CLIPModel.from_pretrained(str(checkpoint_dir())).eval()
    return model, AutoImageProcessor.from_pretrained(str(checkpoint_dir())), CLIPTokenizer.from_pretrained(str(checkpoint_dir())), torch


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
        assert (DEFAULT_REPOSITORY / "clip_tokenizer" / "1" / name).read_bytes() == (checkpoint_dir() / name).read_bytes()


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


def test_concurrent_text_requests_are_batched(grpc_client, http_client, text_reference):
    batch = texts()
    before = settled_counts(http_client, "clip_tokenizer")
    answers = grpc_fire_all(grpc_client, TEXT_MODEL, [make_inputs(grpcclient, {"text": text_tensor([t])}) for t in batch])
    served = []
    for result, error, _ in answers:
        assert error is None, error
        served.append(result.as_numpy(OUTPUT_NAME)[0])
    check_cosines(batch, served, text_reference, f"{TEXT_MODEL} (one text per request, all at once)")
    inferences, executions = counts_since(http_client, "clip_tokenizer", before, len(batch))
    assert inferences == len(batch) and executions < inferences


def test_concurrent_image_requests_are_batched(grpc_client, http_client, samples, image_reference):
    before = settled_counts(http_client, "clip_image_encoder")
    picks = [i % len(samples) for i in range(32)]
    answers = grpc_fire_all(grpc_client, IMAGE_MODEL, [image_request(grpcclient, samples[i].data) for i in picks])
    for i, (result, error, _) in zip(picks, answers):
        assert error is None, error
        assert float(result.as_numpy(OUTPUT_NAME)[0] @ image_reference[i]) >= MIN_COSINE
    inferences, executions = counts_since(http_client, "clip_image_encoder", before, len(picks))
    print(f"\nclip_image_encoder: {inferences} pictures in {executions} executions")
    assert inferences == len(picks) and executions < inferences


BAD = testset.invalid_samples()


@pytest.mark.parametrize("name,data,fragment", BAD, ids=[b[0] for b in BAD])
def test_bad_picture_fails_alone(grpc_client, samples, image_reference, name, data, fragment):
    requests = [image_request(grpcclient, samples[0].data), image_request(grpcclient, data), image_request(grpcclient, samples[3].data)]
    answers = grpc_fire_all(grpc_client, IMAGE_MODEL, requests)
    error = answers[1][1]
    assert error is not None and fragment in str(error) and "input_image" in str(error), (name, error)
    for i, (result, err, _) in zip((0, 3), (answers[0], answers[2])):
        assert err is None, err
        assert float(result.as_numpy(OUTPUT_NAME)[0] @ image_reference[i]) >= MIN_COSINE


def test_too_thin_picture_is_refused(http_client):
    thin = testset.encode(Image.new("RGB", (3300, 100), (90, 120, 200)), "PNG")
    with pytest.raises(InferenceServerException, match="more than 32 times apart"):
        http_client.infer(IMAGE_MODEL, image_request(httpclient, thin))


def test_invalid_utf8_fails_alone(grpc_client, text_reference):
    good = make_inputs(grpcclient, {"text": text_tensor(["a photo of a cat"])})
    bad = make_inputs(grpcclient, {"text": np.array([[b"ok"], [b"\xff\xfe broken"]], dtype=np.object_)})
    answers = grpc_fire_all(grpc_client, TEXT_MODEL, [good, bad, good])
    assert answers[1][1] is not None and "not valid UTF-8" in str(answers[1][1]) and "text" in str(answers[1][1])
    for result, error, _ in (answers[0], answers[2]):
        assert error is None, error
        assert float(result.as_numpy(OUTPUT_NAME)[0] @ text_reference[2]) >= MIN_COSINE


def test_text_batch_over_the_limit_is_refused(http_client):
    with pytest.raises(InferenceServerException, match="batch"):
        http_client.infer(TEXT_MODEL, make_inputs(httpclient, {"text": text_tensor(["x"] * 65)}))


@pytest.mark.parametrize("model,name", [(IMAGE_MODEL, "input_image"), (TEXT_MODEL, "text")])
def test_wrong_dtype_is_refused(http_client, model, name):
    with pytest.raises(InferenceServerException, match=name):
        http_client.infer(model, make_inputs(httpclient, {name: np.zeros((1, 4), np.float32)}))
