"""Hugging Face image preprocessing (ViT, CLIP) reproduced from the
processor's own `preprocessor_config.json`, on decoded RGB uint8 pictures.

The reference is transformers' PIL backend (`ViTImageProcessorPil`,
`CLIPImageProcessorPil`, 5.x), step by step:

1. convert to RGB, transparency composited over white (`convert_to_rgb`;
   `pipelines.image.decode` mode "rgb" gives exactly those pixels);
2. resize with Pillow (`Image.resize((w, h), resample)`, no reducing_gap):
   to `size` {height, width}, or the short side to `size.shortest_edge`
   with the long side `int(shortest_edge * long / short)`;
3. centre crop `crop_size` at `((H - h) // 2, (W - w) // 2)` (zero padding
   when the picture is smaller, as `center_crop` does);
4. `float32(float64(x) * rescale_factor)`;
5. `(x - mean) / std` in float32, channels first.

Steps 2-3 run per picture (sizes differ); 4-5 run once over the whole batch,
which gives the same floats as the per-picture reference."""

from __future__ import annotations

import json
from dataclasses import dataclass
from math import ceil
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from pipelines.image.decode import check_picture
from pipelines.image.lut import apply_tables, channel_tables

PREPROCESSOR_CONFIG = "preprocessor_config.json"
SHORT_SIDE_BY_DEFAULT = ("CLIP",)
"""Prefixes of the processor classes (CLIPImageProcessor, CLIPFeatureExtractor,
...) whose integer `size` means the short side (their default_to_square is
False); for the others it means a square."""


@dataclass(frozen=True)
class ImageProcessorSpec:
    """The fields of a preprocessor_config.json that decide the pixels."""

    size: dict
    resample: int = 2  # PIL.Image.BILINEAR
    do_resize: bool = True
    do_center_crop: bool = False
    crop_size: dict | None = None
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: tuple = (0.5, 0.5, 0.5)
    image_std: tuple = (0.5, 0.5, 0.5)

    @classmethod
    def from_dict(cls, config: dict) -> "ImageProcessorSpec":
        size = config.get("size", {"height": 224, "width": 224})
        if isinstance(size, int):  # older configs (openai/clip-vit-base-patch32: "size": 224)
            kind = config.get("image_processor_type") or config.get("feature_extractor_type") or ""
            square = config.get("default_to_square", not kind.startswith(SHORT_SIDE_BY_DEFAULT))
            size = {"height": size, "width": size} if square else {"shortest_edge": size}
        crop = config.get("crop_size")
        if isinstance(crop, int):
            crop = {"height": crop, "width": crop}
        return cls(
            size=dict(size),
            resample=int(config.get("resample", 2)),
            do_resize=bool(config.get("do_resize", True)),
            do_center_crop=bool(config.get("do_center_crop", False)),
            crop_size=dict(crop) if crop else None,
            do_rescale=bool(config.get("do_rescale", True)),
            rescale_factor=float(config.get("rescale_factor", 1 / 255)),
            do_normalize=bool(config.get("do_normalize", True)),
            image_mean=tuple(float(v) for v in config.get("image_mean", (0.5, 0.5, 0.5))),
            image_std=tuple(float(v) for v in config.get("image_std", (0.5, 0.5, 0.5))),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> "ImageProcessorSpec":
        path = Path(path)
        if path.is_dir():
            path = path / PREPROCESSOR_CONFIG
        return cls.from_dict(json.loads(path.read_text()))

    @property
    def output_size(self) -> tuple[int, int]:
        """(height, width) of the network input."""
        if self.do_center_crop and self.crop_size:
            return int(self.crop_size["height"]), int(self.crop_size["width"])
        if "height" in self.size:
            return int(self.size["height"]), int(self.size["width"])
        raise ValueError(f"no fixed output size: size {self.size} without a centre crop")


def resize_target(height: int, width: int, size: dict) -> tuple[int, int]:
    """(height, width) after the resize step."""
    if "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    if "shortest_edge" in size:
        short_edge = int(size["shortest_edge"])
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(short_edge * long / short)
        return (new_long, short_edge) if width <= height else (short_edge, new_long)
    raise ValueError(f"unsupported resize size {size}")


def center_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """HWC crop at ((H - h) // 2, (W - w) // 2); a smaller picture is first
    centred on zeros (transformers' padding rule)."""
    h, w = image.shape[:2]
    if h < height or w < width:
        new_h, new_w = max(height, h), max(width, w)
        canvas = np.zeros((new_h, new_w) + image.shape[2:], dtype=image.dtype)
        top, left = ceil((new_h - h) / 2), ceil((new_w - w) / 2)
        canvas[top : top + h, left : left + w] = image
        image, h, w = canvas, new_h, new_w
    top, left = (h - height) // 2, (w - width) // 2
    return image[top : top + height, left : left + width]


def resize_and_crop(image: np.ndarray, spec: ImageProcessorSpec) -> np.ndarray:
    """Steps 2-3 on one RGB uint8 HxWx3 picture -> uint8 hxwx3."""
    check_picture(image, aspect_ratio_limit=spec.do_resize and "shortest_edge" in spec.size)
    if spec.do_resize:
        height, width = resize_target(image.shape[0], image.shape[1], spec.size)
        image = np.asarray(Image.fromarray(image).resize((width, height), resample=spec.resample))
    if spec.do_center_crop and spec.crop_size:
        image = center_crop(image, int(spec.crop_size["height"]), int(spec.crop_size["width"]))
    return image


def rescale_and_normalize(pixels: np.ndarray, spec: ImageProcessorSpec) -> np.ndarray:
    """Steps 4-5 as transformers writes them, uint8 [N, h, w, 3] -> float32
    [N, h, w, 3] (channels last)."""
    x = pixels.astype(np.float64) * spec.rescale_factor if spec.do_rescale else pixels
    x = x.astype(np.float32)
    if spec.do_normalize:
        mean = np.asarray(spec.image_mean, dtype=np.float32)
        std = np.asarray(spec.image_std, dtype=np.float32)
        x = (x - mean) / std
    return x.astype(np.float32)


def normalization_tables(spec: ImageProcessorSpec) -> np.ndarray:
    """Steps 4-5 as lookup tables [3, 256], made by `rescale_and_normalize` itself."""
    return channel_tables(lambda values: rescale_and_normalize(values, spec))


def normalize_batch(pixels: np.ndarray, spec: ImageProcessorSpec, tables: np.ndarray | None = None) -> np.ndarray:
    """Steps 4-5 on uint8 [N, h, w, 3] -> float32 [N, 3, h, w] through the
    lookup tables (identical floats, faster); pass `tables` to reuse them."""
    return apply_tables(pixels, normalization_tables(spec) if tables is None else tables)


def preprocess(images: Sequence[np.ndarray], spec: ImageProcessorSpec) -> np.ndarray:
    """RGB uint8 pictures -> the processor's `pixel_values`, float32 [N, 3, h, w];
    ValueError naming the first bad picture."""
    crops = []
    for index, image in enumerate(images):
        try:
            crops.append(resize_and_crop(image, spec))
        except ValueError as error:
            raise ValueError(f"image {index}: {error}") from None
    return normalize_batch(np.stack(crops), spec)


def reference_pixel_values(processor, images: Sequence) -> np.ndarray:
    """transformers' own processor on RGB uint8 pictures (or PIL images):
    its `pixel_values`. Arrays go in as PIL images, since transformers would
    take a picture 3 pixels high for a channels-first one."""
    pictures = [Image.fromarray(image) if isinstance(image, np.ndarray) else image for image in images]
    return processor(images=pictures, return_tensors="np")["pixel_values"]
