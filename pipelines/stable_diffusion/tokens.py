"""Prompts to CLIP token ids as diffusers' encode_prompt makes them
(CLIPTokenizer, truncation and padding to model_max_length, 77): the
repository's tokenizer code on the checkpoint's tokenizer.json, padded to
the full context with the pad token."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from pipelines.text.tokenizer import SentenceTokenizer


class PromptTokenizer:
    def __init__(self, tokenizer_dir: Path | str):
        self.tokenizer = SentenceTokenizer(tokenizer_dir)
        self.length = self.tokenizer.max_length

    def __call__(self, prompts: Sequence[str]) -> np.ndarray:
        """int64 [len(prompts), 77]."""
        ids = self.tokenizer(list(prompts)).input_ids
        padded = np.full((len(prompts), self.length), self.tokenizer.pad_id, dtype=np.int64)
        padded[:, : ids.shape[1]] = ids[:, : self.length]
        return padded
