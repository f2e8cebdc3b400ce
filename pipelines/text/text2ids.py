"""MATXScript's text2ids example: BERT basic tokenisation (clean, lowercase,
strip accents, split CJK characters and punctuation), then each word to its
vocab.txt id, unknown words to [UNK]. Words, not word pieces."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from tokenizers import normalizers, pre_tokenizers


class Text2Ids:
    def __init__(self, vocab_path: Path | str, unk_token: str = "[UNK]"):
        words = Path(vocab_path).read_text(encoding="utf-8").splitlines()
        self.vocab = {word: index for index, word in enumerate(words)}
        if unk_token not in self.vocab:
            raise ValueError(f"{vocab_path} has no {unk_token}")
        self.unk_id = self.vocab[unk_token]
        # the same rules as transformers' BasicTokenizer(do_lower_case=True)
        self.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
        self.pre_tokenizer = pre_tokenizers.BertPreTokenizer()

    def words(self, text: str) -> list[str]:
        return [word for word, _ in self.pre_tokenizer.pre_tokenize_str(self.normalizer.normalize_str(text))]

    def __call__(self, text: str) -> np.ndarray:
        return np.array([self.vocab.get(word, self.unk_id) for word in self.words(text)], dtype=np.int64)

    def batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [self(text) for text in texts]
