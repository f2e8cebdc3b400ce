"""text_embedding (tokenizer -> ONNX encoder -> pooling) against
sentence-transformers on the same weights, and text2ids against BERT's basic
tokenizer on the same vocab. Tolerance: cosine >= 0.9999 per sentence. (Bad
input, batching, several texts per request: tests/test_contracts.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from triton_helpers import grpc_fire_all, make_inputs
from tritonclient.utils import InferenceServerException

from clients import triton_stats
from references.text import packaged_model_dir
from testsets.sentences import varied_sentences

MIN_COSINE = 0.9999


def text_tensor(texts) -> np.ndarray:
    return np.array([[t.encode("utf-8") if isinstance(t, str) else t] for t in texts], dtype=np.object_)


@pytest.fixture(scope="module")
def sentences():
    return varied_sentences(300)


@pytest.fixture(scope="module")
def reference(sentences):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(packaged_model_dir()), device="cpu")
    assert model.max_seq_length == 256
    return model.encode(sentences, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)


def test_served_embeddings_match_sentence_transformers(grpc_client, http_client, sentences, reference):
    before = triton_stats.settled(http_client, "text_encoder")
    sizes = [1, 3, 8, 16, 2, 5] * 20
    requests, spans, start = [], [], 0
    for size in sizes:
        if start >= len(sentences):
            break
        chunk = sentences[start : start + size]
        requests.append(make_inputs(grpcclient, {"text": text_tensor(chunk)}))
        spans.append((start, start + len(chunk)))
        start += len(chunk)
    served = np.zeros_like(reference)
    for (lo, hi), (result, error, _) in zip(spans, grpc_fire_all(grpc_client, "text_embedding", requests)):
        assert error is None, error
        served[lo:hi] = result.as_numpy("embedding")
    cosines = (served * reference).sum(axis=1)
    worst = int(np.argmin(cosines))
    print(f"\ntext_embedding vs sentence-transformers on {len(sentences)} texts: min cosine {cosines.min():.6f}, mean {cosines.mean():.7f}")
    assert cosines.min() >= MIN_COSINE, f"worst: {sentences[worst]!r} cosine {cosines[worst]}"
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)
    assert triton_stats.since(http_client, "text_encoder", before, len(sentences)).inferences == len(sentences)


def test_http_single_text(http_client, sentences, reference):
    result = http_client.infer("text_embedding", make_inputs(httpclient, {"text": text_tensor([sentences[5]])}))
    embedding = result.as_numpy("embedding")
    assert embedding.shape == (1, 384) and embedding.dtype == np.float32
    assert float(embedding[0] @ reference[5]) >= MIN_COSINE


def test_batch_over_max_batch_size(http_client):
    with pytest.raises(InferenceServerException, match="batch-size must be <= 64"):
        http_client.infer("text_embedding", make_inputs(httpclient, {"text": text_tensor(["x"] * 65)}))


def test_empty_request(http_client):
    with pytest.raises(InferenceServerException):
        http_client.infer("text_embedding", make_inputs(httpclient, {"text": np.zeros((0, 1), np.object_)}))
    result = http_client.infer("text_embedding", make_inputs(httpclient, {"text": text_tensor(["still serving"])}))
    assert result.as_numpy("embedding").shape == (1, 384)


def vocab_ids(words):
    vocab = {w: i for i, w in enumerate((packaged_model_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines())}
    return [vocab.get(w, vocab["[UNK]"]) for w in words]


def text2ids(client, module, text) -> list[int]:
    result = client.infer("text2ids", make_inputs(module, {"text": np.array([text.encode()], dtype=np.object_)}))
    return result.as_numpy("ids").tolist()


def test_text2ids_hello_world(http_client, grpc_client):
    # "unknown" is itself a word of this vocab (id 4242); an out-of-vocab word maps to [UNK]
    assert text2ids(http_client, httpclient, "hello world qwzxvy") == vocab_ids(["hello", "world", "[UNK]"]) == [7592, 2088, 100]
    assert text2ids(grpc_client, grpcclient, "hello world unknown") == vocab_ids(["hello", "world", "unknown"])


def test_text2ids_matches_bert_basic_tokenizer(http_client, sentences):
    from transformers.models.bert.tokenization_bert_legacy import (
        BasicTokenizer,  # transformers 5 keeps the Python one here
    )

    basic = BasicTokenizer(do_lower_case=True)
    for text in sentences[:80]:
        assert text2ids(http_client, httpclient, text) == vocab_ids(basic.tokenize(text)), text


def test_client_search_and_ids(triton, tmp_path, capsys):
    from clients.text_embedding_client import main

    corpus = tmp_path / "sentences.txt"
    corpus.write_text("The cat sleeps on the sofa.\nStock markets fell sharply today.\nA kitten naps on the couch.\n")
    assert main(["--url", triton.grpc_url, "--protocol", "grpc", "search", str(corpus), "a cat sleeping on a couch", "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "Stock" not in "".join(lines)
    assert main(["--url", triton.http_url, "ids", "hello world"]) == 0
    assert capsys.readouterr().out.strip() == "[7592, 2088]"
