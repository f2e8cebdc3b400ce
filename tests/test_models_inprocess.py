"""Every Python model's factory (the code its model.py runs) and the
ensembles' wiring, in this process through tests/inprocess.py: no server,
the same code, compared with the references (the OCR and orientation
pipelines: tests/ocr/test_ocr_logic.py, tests/image/test_orientation_logic.py)."""

from __future__ import annotations

import numpy as np
import pytest
from inprocess import error_of, outputs_of
from PIL import Image

from clients.common import encoded_bytes_tensor
from pipelines.image.decode import decode_image
from pipelines.vit.models import TorchViT
from runtime.paths import checkpoint_dir
from references.clip import TorchCLIP
from references.text import packaged_model_dir
from testsets.images import encode, photo_samples
from testsets.sentences import varied_sentences

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def photos():
    return photo_samples()[:6]


def picture(data: bytes) -> dict[str, np.ndarray]:
    return {"input_image": encoded_bytes_tensor(data)[None]}


def texts_tensor(texts: list[str]) -> np.ndarray:
    return np.array([[t.encode()] for t in texts], dtype=np.object_)


def test_image_decode_computes_only_what_is_asked(inprocess, photos):
    data = photos[1].data
    both = outputs_of(inprocess.infer("image_decode", picture(data)))
    assert set(both) == {"image", "image_rapid", "image_rapidocr"}
    for output, rule in (("image", "rgb"), ("image_rapid", "rapid"), ("image_rapidocr", "rapidocr")):
        assert np.array_equal(both[output][0], decode_image(data, rule))
    assert set(outputs_of(inprocess.infer("image_decode", picture(data), ["image"]))) == {"image"}


def test_image_decode_several_rows_and_mixed_sizes(inprocess):
    small = encode(Image.new("RGB", (5, 4), (1, 2, 3)), "PNG")
    other = encode(Image.new("RGB", (6, 4), (1, 2, 3)), "PNG")
    width = max(len(small), len(other))  # PNG readers stop at IEND: zeros after it pad the rows to one length
    rows = [encoded_bytes_tensor(data + bytes(width - len(data))) for data in (small, other)]
    two = outputs_of(inprocess.infer("image_decode", {"input_image": np.stack([rows[0]] * 2)}, ["image"]))
    assert two["image"].shape == (2, 4, 5, 3)
    message = error_of(inprocess.infer("image_decode", {"input_image": np.stack(rows)}))
    assert "input 'input_image': the 2 images of one request decode to different sizes" in message


@pytest.mark.parametrize("model", ["vit", "vit_python"])
def test_vit_deployments_in_process(inprocess, photos, model):
    reference = TorchViT(checkpoint_dir("vit"))
    for sample in photos:
        got = outputs_of(inprocess.infer(model, picture(sample.data)))["last_hidden_state"][0]
        want = reference([decode_image(sample.data, "rgb")])[0]
        assert float(np.abs(got - want).max()) <= TOLERANCE, sample.name


def test_clip_ensembles_in_process(inprocess, photos):
    clip = TorchCLIP(checkpoint_dir("clip"))
    for sample in photos:
        got = outputs_of(inprocess.infer("clip_image_embedding", picture(sample.data)))["embedding"][0]
        assert float(got @ clip.embed_images([decode_image(sample.data, "rgb")])[0]) >= 0.9999, sample.name
    texts = ["", "a photo of a cat", "一只猫", "a long caption " * 30]
    got = outputs_of(inprocess.infer("clip_text_embedding", {"text": texts_tensor(texts)}))["embedding"]
    assert ((got * clip.embed_texts(texts)).sum(axis=1) >= 0.9999).all()


def test_text_embedding_in_process_matches_sentence_transformers(inprocess):
    from sentence_transformers import SentenceTransformer

    sentences = varied_sentences(24)
    reference = SentenceTransformer(str(packaged_model_dir()), device="cpu").encode(sentences, normalize_embeddings=True)
    requests = [{"text": texts_tensor(sentences[i : i + 4])} for i in range(0, len(sentences), 4)]
    got = np.concatenate([outputs_of(r)["embedding"] for r in inprocess.infer_batch("text_embedding", requests)])
    assert ((got * reference).sum(axis=1) >= 0.9999).all()


def test_tokenizer_pads_each_request_to_its_own_longest(inprocess):
    short, long = ["hi"], ["a much longer sentence than the other one, with many tokens"]
    responses = inprocess.infer_batch("text_tokenizer", [{"text": texts_tensor(short)}, {"text": texts_tensor(long)}])
    assert outputs_of(responses[0])["input_ids"].shape[1] < outputs_of(responses[1])["input_ids"].shape[1]
    bad = inprocess.infer_batch("text_tokenizer", [{"text": np.array([[b"\xff"]], dtype=object)}, {"text": texts_tensor(short)}])
    assert "input 'text': text item 0 is not valid UTF-8" in error_of(bad[0]) and not bad[1].has_error()


def test_pooling_stacks_same_shaped_requests(inprocess):
    rng = np.random.default_rng(0)
    requests = [
        {"last_hidden_state": rng.standard_normal((b, n, 384)).astype(np.float32), "attention_mask": np.ones((b, n), np.int64)}
        for b, n in ((1, 5), (2, 5), (1, 7))
    ]
    for sent, response in zip(requests, inprocess.infer_batch("text_pooling", requests)):
        got = outputs_of(response)["embedding"]
        want = sent["last_hidden_state"].mean(axis=1)
        np.testing.assert_allclose(got, want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-6)


def test_text2ids_one_text_per_request(inprocess):
    ids = outputs_of(inprocess.infer("text2ids", {"text": np.array([b"hello world"], dtype=object)}))["ids"]
    assert ids.tolist() == [7592, 2088]
    assert "input 'text': expected shape [1], got [2]" in error_of(inprocess.infer("text2ids", {"text": np.array([b"a", b"b"], dtype=object)}))


def test_datatypes_ensemble_carries_every_type(inprocess):
    from clients.datatypes_client import example_tensors

    sent = example_tensors(batch=2)
    got = outputs_of(inprocess.infer("datatypes", sent))
    for name, array in sent.items():
        assert np.array_equal(got[name.replace("input", "output")], array), name
