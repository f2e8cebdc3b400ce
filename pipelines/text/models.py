"""Batch functions of the text Python models (model.py files are adapters).

Each make_* runs once per model instance and returns process(requests):
a list of per-request input dicts -> a list of per-request output dicts or
exceptions (an exception fails only its own request)."""

from __future__ import annotations

import os

import numpy as np

from pipelines.serving.tensors import RequestError, group_by_item_shape, split_batch, stack_batch
from pipelines.text.minilm import SentenceTokenizer, decode_utf8, l2_normalize, mean_pool
from pipelines.text.text2ids import Text2Ids


def _version_dir(args: dict) -> str:
    return os.path.join(args["model_repository"], args["model_version"])


def _texts_of(tensors: dict[str, np.ndarray]) -> list[str]:
    try:
        return decode_utf8(tensors["text"].reshape(-1))
    except ValueError as error:
        raise RequestError(f"input 'text': {error}") from None


def make_tokenizer(config: dict, args: dict):
    """text BYTES [B, 1] -> the config's outputs among input_ids,
    attention_mask, token_type_ids (INT64 [B, L]), with the tokenizer.json of
    the version folder; used by text_tokenizer and clip_tokenizer."""
    tokenize = SentenceTokenizer(_version_dir(args))
    outputs = [output["name"] for output in config.get("output", [])]

    def process(requests):
        answers, groups, owners = [], [], []
        for index, tensors in enumerate(requests):
            try:
                groups.append(_texts_of(tensors))
                owners.append(index)
                answers.append(None)
            except RequestError as error:
                answers.append(error)
        # one tokenizer call for the whole execute; each request is padded to
        # its own longest text (padding to the execute's longest made every
        # short sentence pay for the longest one in the encoder)
        for index, encoded in zip(owners, tokenize.encode_groups(groups)):
            arrays = encoded.as_dict()
            answers[index] = {name: arrays[name] for name in outputs}
        return answers

    return process


def make_pooling(config: dict, args: dict):
    def process(requests):
        answers = [None] * len(requests)
        for group in group_by_item_shape(requests):
            batch, sizes = stack_batch([requests[i] for i in group])
            pooled = l2_normalize(mean_pool(batch["last_hidden_state"], batch["attention_mask"]))
            for index, part in zip(group, split_batch({"embedding": pooled}, sizes)):
                answers[index] = part
        return answers

    return process


def make_text2ids(config: dict, args: dict):
    text2ids = Text2Ids(os.path.join(_version_dir(args), "vocab.txt"))

    def process(requests):
        answers = []
        for tensors in requests:
            try:
                (text,) = _texts_of(tensors)
            except (RequestError, ValueError) as error:
                answers.append(error if isinstance(error, RequestError) else RequestError(f"input 'text': expected one text, {error}"))
                continue
            answers.append({"ids": text2ids(text)})
        return answers

    return process
