"""pipelines.image.hf_processor against transformers' own PIL-backend image
processors (ViTImageProcessorPil, CLIPImageProcessorPil), in-process, bit for
bit: the photo test set, odd sizes, processors configured differently, and
the RGB conversion of pictures with alpha, grey and palette pictures.

transformers gets PIL images (`Image.fromarray` of the decoded array): a
numpy array 3 pixels high would be read as channels-first."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from transformers.image_transforms import convert_to_rgb
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

from pipelines.image import decode
from pipelines.image.decode import MAX_ASPECT_RATIO, check_picture, decode_image
from pipelines.image.hf_processor import ImageProcessorSpec, preprocess
from testsets import images as testset

PROCESSORS = {
    "vit": ViTImageProcessorPil,
    "clip": CLIPImageProcessorPil,
    # configured differently
    "clip-256-crop-224": lambda: CLIPImageProcessorPil(size={"shortest_edge": 256}, crop_size=224),
    "clip-200-crop-180x220": lambda: CLIPImageProcessorPil(size={"shortest_edge": 200}, crop_size={"height": 180, "width": 220}),
    "clip-crop-pads": lambda: CLIPImageProcessorPil(size={"shortest_edge": 160}, crop_size=224),  # crop larger than the resize
    "clip-no-rescale": lambda: CLIPImageProcessorPil(do_rescale=False),
    "vit-384": lambda: ViTImageProcessorPil(size=384),
    "vit-no-normalize": lambda: ViTImageProcessorPil(do_normalize=False),
    "vit-nearest-100x150": lambda: ViTImageProcessorPil(size={"height": 100, "width": 150}, resample=Image.Resampling.NEAREST),
}

# (width, height); every one within MAX_ASPECT_RATIO
ODD_SIZES = [(1, 1), (3, 3), (223, 225), (225, 223), (2, 3), (3, 1), (1, 32), (64, 2), (7, 9)]
STRIPS = [(2, 500), (500, 2)]


def reference(processor, pictures: list[np.ndarray]) -> np.ndarray:
    return processor(images=[Image.fromarray(p) for p in pictures], return_tensors="np")["pixel_values"]


def ours(processor, pictures: list[np.ndarray]) -> np.ndarray:
    return preprocess(pictures, ImageProcessorSpec.from_dict(processor.to_dict()))


def assert_same(processor, pictures: list[np.ndarray]) -> None:
    want, got = reference(processor, pictures), ours(processor, pictures)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert got.shape == want.shape, (got.shape, want.shape)
    if not np.array_equal(got, want):
        bad = [i for i in range(len(pictures)) if not np.array_equal(got[i], want[i])]
        pytest.fail(f"pictures {bad} differ, max abs difference {np.abs(got - want).max()}")


def random_picture(width: int, height: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def photos() -> list[testset.Sample]:
    return testset.photo_samples()


@pytest.fixture(scope="module")
def pictures(photos) -> list[np.ndarray]:
    return [decode_image(sample.data, "rgb") for sample in photos]


# ----------------------------------------------------------- pixel values


@pytest.mark.parametrize("name", sorted(PROCESSORS))
def test_photo_samples_equal_transformers(name, pictures):
    assert len(pictures) >= 10
    assert_same(PROCESSORS[name](), pictures)


@pytest.mark.parametrize("name", sorted(PROCESSORS))
def test_odd_sizes_equal_transformers(name):
    pictures = [random_picture(w, h, seed) for seed, (w, h) in enumerate(ODD_SIZES)]
    assert_same(PROCESSORS[name](), pictures)


@pytest.mark.parametrize("name", ["vit", "vit-384", "vit-nearest-100x150"])
def test_long_strips_equal_transformers_with_a_fixed_size_resize(name):
    """A resize to a fixed height x width has no aspect-ratio guard: 2x500 and
    500x2 are served, as transformers does."""
    pictures = [random_picture(w, h, 40 + i) for i, (w, h) in enumerate(STRIPS)]
    assert_same(PROCESSORS[name](), pictures)


@pytest.mark.parametrize("name", ["clip", "clip-256-crop-224"])
def test_long_strips_refused_by_short_side_resize(name, monkeypatch):
    """2x500 and 500x2 are over our aspect-ratio guard when the short side is
    resized (CLIP would make them 224 x 56000); without the guard the
    arithmetic is still transformers'."""
    pictures = [random_picture(w, h, 40 + i) for i, (w, h) in enumerate(STRIPS)]
    processor = PROCESSORS[name]()
    with pytest.raises(ValueError, match=r"^image 0: image is 2x500 pixels"):
        ours(processor, pictures)
    with pytest.raises(ValueError, match=r"^image 0: image is 500x2 pixels"):
        ours(processor, pictures[::-1])
    monkeypatch.setattr(decode, "MAX_ASPECT_RATIO", 1000.0)
    assert_same(processor, pictures)


@pytest.mark.parametrize("name", sorted(PROCESSORS))
def test_spec_output_size(name):
    processor = PROCESSORS[name]()
    spec = ImageProcessorSpec.from_dict(processor.to_dict())
    assert spec.output_size == reference(processor, [random_picture(31, 17, 0)]).shape[2:]


def test_legacy_square_int_size_for_vit():
    """Old preprocessor_config.json files give sizes as ints; for ViT an int is a square."""
    legacy = {"do_resize": True, "size": 384, "resample": 2, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    processor = ViTImageProcessorPil.from_dict(legacy)
    assert ImageProcessorSpec.from_dict(legacy).size == {"height": 384, "width": 384}
    assert_same(processor, [random_picture(300, 200, 1), random_picture(17, 40, 2)])


CLIP_HUB_CONFIG = {
    # openai/clip-vit-base-patch32's preprocessor_config.json as published (ints, no default_to_square)
    "crop_size": 224,
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "size": 224,
}


def test_legacy_clip_hub_config():
    processor = CLIPImageProcessorPil.from_dict(dict(CLIP_HUB_CONFIG))
    pictures = [random_picture(300, 200, 3)]
    want = reference(processor, pictures)
    got = preprocess(pictures, ImageProcessorSpec.from_dict(dict(CLIP_HUB_CONFIG)))
    assert np.array_equal(got, want)


# ------------------------------------------------------------ RGB decode


def test_decode_rgb_equals_convert_to_rgb(photos, pictures):
    """decode mode "rgb" gives transformers' convert_to_rgb pixels (alpha over
    white, grey repeated, palette colours), plus a palette with transparency
    and a bilevel page from the other sample sets."""
    items = [(s.name, s.data, p) for s, p in zip(photos, pictures)]
    extra = {s.name: s for s, _ in testset.rapid_deviation_samples()} | {s.name: s for s in testset.document_samples()}
    for name in ("deviation-palette-transparent-90.png", "page-mono-bilevel-0.png", "page-serif-transparent-0.png"):
        items.append((name, extra[name].data, decode_image(extra[name].data, "rgb")))
    modes = set()
    for name, data, ours_rgb in items:
        with Image.open(io.BytesIO(data)) as image:
            modes.add(image.mode)
            want = convert_to_rgb(image, return_numpy=True)
        assert ours_rgb.dtype == np.uint8 and ours_rgb.shape == want.shape, name
        assert np.array_equal(ours_rgb, want), f"{name}: max abs difference {np.abs(ours_rgb.astype(int) - want).max()}"
    assert {"RGBA", "LA", "L", "P", "1"} <= modes, modes


# ------------------------------------------------------------------ guard


def test_check_picture_refuses_extreme_aspect_ratio():
    with pytest.raises(ValueError, match=r"image is 1x100 pixels") as error:
        check_picture(np.zeros((100, 1, 3), np.uint8))
    assert f"{MAX_ASPECT_RATIO:g} times" in str(error.value)
    with pytest.raises(ValueError, match=r"image is 100x1 pixels"):
        check_picture(np.zeros((1, 100, 3), np.uint8))
    check_picture(np.zeros((1, int(MAX_ASPECT_RATIO), 3), np.uint8))  # exactly the limit is fine
    # preprocess names the picture (the guard is for short-side resizes, as CLIP's)
    clip = ImageProcessorSpec.from_dict(CLIPImageProcessorPil().to_dict())
    with pytest.raises(ValueError, match=r"^image 1: image is 1x100 pixels"):
        preprocess([np.zeros((5, 5, 3), np.uint8), np.zeros((100, 1, 3), np.uint8)], clip)


@pytest.mark.parametrize(
    "array, words",
    [
        (np.zeros((4, 4), np.uint8), "uint8 [4, 4]"),
        (np.zeros((4, 4, 4), np.uint8), "uint8 [4, 4, 4]"),
        (np.zeros((4, 4, 3), np.float32), "float32 [4, 4, 3]"),
        (np.zeros((0, 4, 3), np.uint8), "empty image 4x0"),
    ],
)
def test_check_picture_refuses_other_arrays(array, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        check_picture(array)


def test_transparency_over_white_equals_pillow_alpha_composite_for_every_pair():
    """decode's "rgb" rule for alpha = transformers' convert_to_rgb (Pillow's
    alpha_composite over opaque white), for all 256 x 256 colour/alpha pairs."""
    from PIL import Image

    from pipelines.image.decode import convert_pixels

    colour = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 256, axis=1)
    alpha = np.repeat(np.arange(256, dtype=np.uint8)[None, :], 256, axis=0)
    rgba = np.stack([colour, colour, colour, alpha], axis=-1)
    white = Image.new("RGBA", (256, 256), (255, 255, 255, 255))
    expected = np.asarray(Image.alpha_composite(white, Image.fromarray(rgba)).convert("RGB"))
    assert np.array_equal(convert_pixels(rgba, "rgb"), expected)
    assert np.array_equal(convert_pixels(np.stack([colour, alpha], axis=-1), "rgb"), expected)
