"""Batch functions of the text Python models (model.py files are adapters).

- `text_tokenizer`, `clip_tokenizer` (`make_tokenizer`): text BYTES [B, 1]
  -> the config's outputs among input_ids, attention_mask, token_type_ids
  (INT64 [B, L]), each request padded to its own longest text;
- `text_pooling` (`make_pooling`): token vectors + mask -> L2-normalised
  mean, stacked across requests of the same length;
- `text2ids` (`make_text2ids`): one text -> its vocabulary ids."""

from __future__ import annotations

import numpy as np

from pipelines.serving.batching import grouped_by_shape, prepared, stacked
from pipelines.serving.partition import per_item
from pipelines.serving.python_model import ModelContext, RequestTensors
from pipelines.serving.tensors import RequestError
from pipelines.text.pooling import l2_normalize, mean_pool
from pipelines.text.text2ids import Text2Ids
from pipelines.text.tokenizer import SentenceTokenizer, decode_utf8


def texts_of(tensors: RequestTensors) -> list[str]:
    try:
        return decode_utf8(tensors["text"].reshape(-1))
    except ValueError as error:
        raise RequestError(f"input 'text': {error}") from None


def make_tokenizer(context: ModelContext):
    """The tokenizer.json (and its configs) of the version folder."""
    tokenize = SentenceTokenizer(context.version_dir)
    outputs = [spec.name for spec in context.outputs()]

    def encode(groups: list[list[str]]) -> list[dict[str, np.ndarray]]:
        # one tokenizer call for the whole execute; each request padded to its
        # own longest text (padding to the execute's longest made every short
        # sentence pay for the longest one in the encoder)
        return [{name: encoded.as_dict()[name] for name in outputs} for encoded in tokenize.encode_groups(groups)]

    return prepared(texts_of, encode)


def pool(batch: RequestTensors) -> dict[str, np.ndarray]:
    return {"embedding": l2_normalize(mean_pool(batch["last_hidden_state"], batch["attention_mask"]))}


def make_pooling(context: ModelContext):
    return grouped_by_shape(stacked(pool))


def make_text2ids(context: ModelContext):
    text2ids = Text2Ids(context.file("vocab.txt"))

    def ids(tensors: RequestTensors) -> dict[str, np.ndarray]:
        (text,) = texts_of(tensors)  # one text: the config's dims [1], checked before
        return {"ids": text2ids(text)}

    return per_item(ids)
