"""Pure text functions: tokenizer grouping, pooling, normalisation."""

from __future__ import annotations

import numpy as np

from pipelines.text.pooling import l2_normalize, mean_pool
from pipelines.text.tokenizer import SentenceTokenizer, decode_utf8
from references.text import packaged_model_dir
from testsets.sentences import varied_sentences


def test_encode_groups_pads_each_group_to_its_own_longest():
    tokenize = SentenceTokenizer(packaged_model_dir())
    groups = [varied_sentences(40)[:3], ["hi"], varied_sentences(40)[20:40], []]
    for group, encoded in zip(groups, tokenize.encode_groups(groups)):
        if not group:
            assert encoded.input_ids.shape == (0, 0)
            continue
        alone = tokenize(group)
        for name, array in encoded.as_dict().items():
            np.testing.assert_array_equal(array, alone.as_dict()[name], err_msg=name)
    assert tokenize([" ".join(["word"] * 600)]).input_ids.shape == (1, 256)


def test_mean_pool_ignores_padding_and_normalize_handles_zero():
    hidden = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    mask = np.array([[1, 1, 0], [0, 0, 0]])
    pooled = mean_pool(hidden, mask)
    np.testing.assert_allclose(pooled[0], hidden[0, :2].mean(axis=0))
    np.testing.assert_array_equal(pooled[1], [0, 0])
    np.testing.assert_array_equal(l2_normalize(pooled)[1], [0, 0])
    np.testing.assert_allclose(np.linalg.norm(l2_normalize(pooled)[0]), 1.0, rtol=1e-6)


def test_decode_utf8_names_the_bad_item():
    assert decode_utf8([b"a", "b"]) == ["a", "b"]
    try:
        decode_utf8([b"ok", b"\xc3\x28"])
    except ValueError as error:
        assert "item 1" in str(error)
    else:
        raise AssertionError("invalid UTF-8 accepted")
