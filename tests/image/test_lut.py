"""Lookup-table normalisation gives the formula's floats bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.image import hf_processor, orientation
from pipelines.image.lut import apply_tables, channel_tables

SPECS = {
    "clip": hf_processor.ImageProcessorSpec(
        size={"shortest_edge": 224},
        resample=3,
        do_center_crop=True,
        crop_size={"height": 224, "width": 224},
        image_mean=(0.48145466, 0.4578275, 0.40821073),
        image_std=(0.26862954, 0.26130258, 0.27577711),
    ),
    "vit": hf_processor.ImageProcessorSpec(size={"height": 224, "width": 224}),
    "no-normalize": hf_processor.ImageProcessorSpec(size={"height": 8, "width": 8}, do_normalize=False),
    "no-rescale": hf_processor.ImageProcessorSpec(size={"height": 8, "width": 8}, do_rescale=False),
}


@pytest.mark.parametrize("shape", [(1, 1, 1, 3), (3, 5, 7, 3), (2, 224, 224, 3)])
@pytest.mark.parametrize("name", sorted(SPECS))
def test_hf_tables_equal_the_formula(name, shape):
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    spec = SPECS[name]
    expected = hf_processor.rescale_and_normalize(pixels, spec).transpose(0, 3, 1, 2)
    got = hf_processor.normalize_batch(pixels, spec)
    assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"] and np.array_equal(got, expected)


def test_orientation_tables_equal_the_formula():
    pixels = np.random.default_rng(1).integers(0, 256, (4, 224, 224, 3), dtype=np.uint8)
    got = apply_tables(pixels, orientation.TABLES)
    assert np.array_equal(got, orientation.normalize(pixels).transpose(0, 3, 1, 2))


def test_every_byte_value_of_every_channel():
    tables = channel_tables(lambda x: x.astype(np.float32) * np.array([1, 2, 3], np.float32))
    assert tables.shape == (3, 256)
    assert np.array_equal(tables[2], np.arange(256, dtype=np.float32) * 3)
