"""The whole RapidOCR flow over the functions of this package, one
composition for every way it runs: the `ocr` ensemble's `ocr_recognize`
(from the detector's map on), `ocr_bls` (from the decoded picture on) and
the in-process reference (references/ocr.py). The three networks are
awaitables (`Networks`): async BLS calls inside Triton, onnxruntime sessions
outside. Pictures progress independently; each picture's classifier groups
are in flight together, and each goes on to the recogniser when it is back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.ocr import det
from pipelines.ocr.params import PARAMS, OcrParams
from pipelines.ocr.recognize import Lines, Network, crop, recognize_crops


@dataclass(frozen=True)
class Networks:
    det: Network | None
    cls: Network
    rec: Network
    characters: list[str]
    """The recogniser's CTC dictionary (blank first)."""


@dataclass
class Prepared:
    """A decoded picture made ready for the detector."""

    det_input: np.ndarray  # float32 [1, 3, H, W]
    image: np.ndarray  # the letterboxed BGR picture the crops are cut from
    restore: det.Restore


def prepare(image_bgr: np.ndarray, p: OcrParams = PARAMS) -> Prepared:
    """Decoded BGR picture -> the detector's input (RapidOCR's global resize,
    letterbox and DetPreProcess); ValueError for a picture too small to resize."""
    return Prepared(*det.prepare(image_bgr, p))


def detect(prob_map: np.ndarray, image: np.ndarray, p: OcrParams = PARAMS) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Detector output for one image -> (boxes [N,4,2] in reading order, in
    the letterboxed image's coordinates; their scores; their crops)."""
    boxes, scores = det.boxes_from_map(prob_map, image.shape[:2], p)
    order = det.reading_order(boxes, p)
    boxes, scores = boxes[order], scores[order]
    return boxes, scores, [crop(image, box) for box in boxes]


def assemble(
    boxes: np.ndarray, scores: np.ndarray, recognized: list[tuple[str, float]], restore: det.Restore, p: OcrParams = PARAMS
) -> Lines:
    """RapidOCR's final filters and map_boxes_to_original: keep the lines
    whose text score is >= text_score (and, with `p.drop_blank_texts`, whose
    text is not blank), boxes mapped back onto the original picture."""
    keep = np.array([score >= p.text_score and not (p.drop_blank_texts and not text.strip()) for text, score in recognized], dtype=bool).reshape(-1)
    if not keep.any():
        return Lines()
    return Lines(
        boxes=det.to_original(boxes[keep], restore),
        box_scores=np.asarray(scores, dtype=np.float32)[keep],
        texts=[text for (text, _), k in zip(recognized, keep) if k],
        text_scores=np.array([s for (_, s), k in zip(recognized, keep) if k], dtype=np.float32),
    )


async def read_detection(prob_map: np.ndarray, image: np.ndarray, restore: det.Restore, nets: Networks, p: OcrParams = PARAMS) -> Lines:
    """Detector output for one picture -> its text lines in reading order."""
    boxes, scores, crops = detect(prob_map, image, p)
    if len(boxes) == 0:
        return Lines()
    return assemble(boxes, scores, await recognize_crops(crops, nets.cls, nets.rec, nets.characters, p), restore, p)


async def read_picture(prepared: Prepared, nets: Networks, p: OcrParams = PARAMS) -> Lines:
    """A prepared picture -> its text lines: the detector, then the rest."""
    prob_map = await nets.det(prepared.det_input)
    return await read_detection(prob_map, prepared.image, prepared.restore, nets, p)
