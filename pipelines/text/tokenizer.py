"""Tokenising for the text encoders (all-MiniLM-L6-v2, CLIP's text tower):
the model's own tokenizer.json through the `tokenizers` library with
sentence-transformers' settings (truncation at max_seq_length, padding to
the longest text of a group), and UTF-8 decoding of BYTES tensors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tokenizers import Tokenizer

DEFAULT_MAX_SEQ_LENGTH = 256


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
