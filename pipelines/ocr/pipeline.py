"""The whole RapidOCR flow over the functions of this package, with the three
networks behind callables (offline onnxruntime sessions, pipelines.ocr.offline,
or Triton calls)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from pipelines.ocr import det
from pipelines.ocr.params import PARAMS, OcrParams
from pipelines.ocr.recognize import Lines, crop, recognize_crops


def detect(
    prob_map: np.ndarray, image: np.ndarray, p: OcrParams = PARAMS
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Detector output for one image -> (boxes [N,4,2] in reading order, in
    the letterboxed image's coordinates; their scores; their crops)."""
    boxes, scores = det.boxes_from_map(prob_map, image.shape[:2], p)
    order = det.reading_order(boxes)
    boxes, scores = boxes[order], scores[order]
    return boxes, scores, [crop(image, box) for box in boxes]


def assemble(
    boxes: np.ndarray, scores: np.ndarray, recognized: list[tuple[str, float]], restore: det.Restore, p: OcrParams = PARAMS
) -> Lines:
    """RapidOCR.filter_result + _get_origin_points: keep the lines whose text
    score is >= text_score, boxes mapped back onto the original picture."""
    keep = np.array([score >= p.text_score for _, score in recognized], dtype=bool).reshape(-1)
    if not keep.any():
        return Lines()
    return Lines(
        boxes=det.to_original(boxes[keep], restore),
        box_scores=np.asarray(scores, dtype=np.float32)[keep],
        texts=[text for (text, _), k in zip(recognized, keep) if k],
        text_scores=np.array([s for (_, s), k in zip(recognized, keep) if k], dtype=np.float32),
    )


def lines_from_detection(
    prob_map: np.ndarray,
    image: np.ndarray,
    restore: det.Restore,
    run_cls: Callable[[np.ndarray], np.ndarray],
    run_rec: Callable[[np.ndarray], np.ndarray],
    characters: list[str],
    p: OcrParams = PARAMS,
) -> Lines:
    """Detector output for one image -> its text lines in reading order."""
    boxes, scores, crops = detect(prob_map, image, p)
    if len(boxes) == 0:
        return Lines()
    return assemble(boxes, scores, recognize_crops(crops, run_cls, run_rec, characters, p), restore, p)
