"""From detected boxes to text, as RapidOCR does it: perspective crops,
0/180 classification in groups of 6, recognition in groups of 6 sorted by
aspect ratio with a per-group padded width, CTC decoding, score filter.

The networks are passed in as awaitables (`await run_cls(batch) -> probs
[n,2]`, `await run_rec(batch) -> (indices, probs)`, the softmax [n,T,C]
reduced per step by ctc_steps), so the same code runs
inside Triton with async BLS calls (the groups of a picture are in flight
together, so the dynamic batcher sees them at once) and offline with
onnxruntime sessions. Grouping is per image, as in RapidOCR: a crop's padded width depends on the other crops of
its group, and the padding changes the recogniser's output slightly, so
crops of different images are never mixed into one group (the server may
still run same-shaped groups of different images in one batch, which does
not change any item's result)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
import asyncio
from typing import Awaitable, Callable

import cv2
import numpy as np

from pipelines.image.lut import channel_tables
from pipelines.ocr.params import PARAMS, OcrParams


def crop(img: np.ndarray, points: np.ndarray) -> np.ndarray:
    """get_rotate_crop_image: perspective crop of a box; tall crops
    (h/w >= 1.5) are turned 90 degrees counter-clockwise."""
    points = points.astype(np.float32)
    width = int(max(np.linalg.norm(points[0] - points[1]), np.linalg.norm(points[2] - points[3])))
    height = int(max(np.linalg.norm(points[0] - points[3]), np.linalg.norm(points[1] - points[2])))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(points, target)
    out = cv2.warpPerspective(img, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    if out.shape[0] * 1.0 / out.shape[1] >= 1.5:
        out = np.rot90(out)
    return out


def crop_normalize(pixels: np.ndarray) -> np.ndarray:
    """resize_norm_img's scaling to [-1, 1]: float32 x / 255, - 0.5, / 0.5."""
    scaled = pixels.astype("float32") / 255
    scaled -= 0.5
    scaled /= 0.5
    return scaled


_CROP_TABLE = channel_tables(crop_normalize, channels=1)[0]
"""`crop_normalize` of every byte value (one table for all channels)."""


def _resize_pad(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize to `height` keeping the aspect ratio (at most `width`), scale
    with `crop_normalize`, pad with zeros on the right: CHW float32."""
    ratio = img.shape[1] / float(img.shape[0])
    resized_w = width if math.ceil(height * ratio) > width else int(math.ceil(height * ratio))
    resized = cv2.resize(img, (resized_w, height))
    # uint8 crops through the table (the same floats); exact decoding's 16-bit ones by the formula
    scaled = cv2.LUT(resized, _CROP_TABLE) if resized.dtype == np.uint8 else crop_normalize(resized)
    padded = np.zeros((3, height, width), dtype=np.float32)
    padded[:, :, :resized_w] = scaled.transpose((2, 0, 1))
    return padded


def aspect_order(crops: list[np.ndarray]) -> np.ndarray:
    """Crop indices sorted by width/height with np.argsort's default sort,
    as TextClassifier and TextRecognizer do (ties keep that sort's order,
    which depends on the whole list: compute it over one image's crops)."""
    return np.argsort(np.array([c.shape[1] / float(c.shape[0]) for c in crops]))


def _groups(crops: list[np.ndarray], size: int) -> list[np.ndarray]:
    """Crop indices sorted by width/height, in consecutive groups of `size`."""
    order = aspect_order(crops)
    return [order[i : i + size] for i in range(0, len(order), size)]


def cls_input(crop_image: np.ndarray, p: OcrParams = PARAMS) -> np.ndarray:
    """TextClassifier.resize_norm_img for one crop: [3,48,192] float32. It
    depends on that crop only, so classifier batches may mix crops freely."""
    _, h, w = p.cls_image_shape
    return _resize_pad(crop_image, h, w)


def cls_batches(crops: list[np.ndarray], p: OcrParams = PARAMS) -> list[tuple[np.ndarray, np.ndarray]]:
    """(indices, input [n,3,48,192]) per classifier group."""
    return [(idx, np.stack([cls_input(crops[i], p) for i in idx])) for idx in _groups(crops, p.cls_batch_num)]


def apply_cls(
    crops: list[np.ndarray], indices, probs: np.ndarray, p: OcrParams = PARAMS
) -> list[tuple[str, float]]:
    """ClsPostProcess + the turn: for each crop `indices[k]` with classifier
    output `probs[k]`, the label is the argmax; crops labelled "180" with a
    probability > cls_thresh are turned 180 degrees in `crops` (in place).
    Returns (label, probability) per row."""
    results = []
    for i, row in zip(indices, probs):
        label = int(row.argmax())
        name, score = p.cls_labels[label], float(row[label])
        if "180" in name and row[label] > p.cls_thresh:
            crops[i] = cv2.rotate(crops[i], cv2.ROTATE_180)
        results.append((name, score))
    return results


def rec_width(ratios, p: OcrParams = PARAMS) -> int:
    """Padded input width of one recogniser group: int(48 * max ratio), the
    maximum taken over the group's width/height ratios and 320/48."""
    _, h, w = p.rec_image_shape
    return int(h * max([w / h, *ratios]))


def rec_input(crops: list[np.ndarray], idx, p: OcrParams = PARAMS) -> np.ndarray:
    """TextRecognizer's input for one group of crops: [n,3,48,W] float32 with
    W = rec_width of the group. Every item depends on the whole group (its
    zero padding on the right), which changes the network's output."""
    _, h, _ = p.rec_image_shape
    width = rec_width([crops[i].shape[1] / float(crops[i].shape[0]) for i in idx], p)
    return np.stack([_resize_pad(crops[i], h, width) for i in idx])


def rec_batches(crops: list[np.ndarray], p: OcrParams = PARAMS) -> list[tuple[np.ndarray, np.ndarray]]:
    """(indices, input [n,3,48,W]) per recogniser group: the crops of one
    image sorted by aspect ratio, in groups of rec_batch_num, each padded to
    its own width (rec_width)."""
    return [(idx, rec_input(crops, idx, p)) for idx in _groups(crops, p.rec_batch_num)]


def ctc_steps(preds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-step reductions CTC decoding uses, from the recogniser's
    softmax [n,T,C]: argmax (first of equal maxima) and max, each [n,T]. The
    served recogniser computes them in its graph (ctc_indices, ctc_scores)."""
    return preds.argmax(axis=2), preds.max(axis=2)


def ctc_decode_steps(indices: np.ndarray, probs: np.ndarray, characters: list[str], p: OcrParams = PARAMS) -> list[tuple[str, float]]:
    """CTCLabelDecode from the per-step argmax `indices` and max `probs`
    [n,T]: merge repeats, drop blanks (index 0). The score is the mean of the
    kept steps' probabilities, 0.0 when nothing is kept; with
    `p.score_decimals` (rapidocr 3.x) each probability and the mean are
    rounded as the library rounds them (Python's round, then numpy's)."""
    results = []
    for row_idx, row_prob in zip(indices, probs):
        keep = np.ones(len(row_idx), dtype=bool)
        keep[1:] = row_idx[1:] != row_idx[:-1]
        keep &= row_idx != 0
        text = "".join(characters[i] for i in row_idx[keep])
        if p.score_decimals is None:
            kept = row_prob[keep].astype(np.float64)
            results.append((text, float(np.mean(kept)) if kept.size else 0.0))
        else:
            confidences = [round(value, p.score_decimals) for value in row_prob[keep].tolist()] or [0]
            results.append((text, float(np.mean(confidences).round(p.score_decimals))))
    return results


@dataclass
class Lines:
    """The text lines of one picture in reading order: boxes [N,4,2] float32
    (top-left, top-right, bottom-right, bottom-left, original picture
    coordinates), detector box scores [N], texts, text scores [N]. Iterating
    gives (box, box_score, text, text_score) tuples."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4, 2), np.float32))
    box_scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    texts: list = field(default_factory=list)
    text_scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))

    def __len__(self) -> int:
        return len(self.texts)

    def __iter__(self):
        for box, box_score, text, text_score in zip(self.boxes, self.box_scores, self.texts, self.text_scores):
            yield box, float(box_score), text, float(text_score)

    def as_outputs(self) -> dict[str, np.ndarray]:
        return {
            "boxes": self.boxes.astype(np.float32).reshape(-1, 4, 2),
            "box_scores": self.box_scores.astype(np.float32),
            "texts": np.array([t.encode("utf-8") for t in self.texts], dtype=np.object_),
            "text_scores": self.text_scores.astype(np.float32),
        }


Network = Callable[[np.ndarray], Awaitable]
"""A network behind an awaitable: `await run(batch) -> output` (the
recogniser's output: the pair of ctc_steps)."""


async def classify_crops(crops: list[np.ndarray], run_cls: Network, p: OcrParams = PARAMS) -> tuple[list[np.ndarray], list[tuple[str, float]]]:
    """TextClassifier on the crops of one image: a new list with the crops
    judged upside down turned, and (label, probability) per crop. The
    groups' calls are issued together."""
    crops = list(crops)
    batches = cls_batches(crops, p)
    outputs = await asyncio.gather(*(run_cls(batch) for _, batch in batches))
    results: list = [("", 0.0)] * len(crops)
    for (idx, _), probs in zip(batches, outputs, strict=True):
        for i, result in zip(idx, apply_cls(crops, idx, probs, p), strict=True):
            results[i] = result
    return crops, results


async def read_crops(crops: list[np.ndarray], run_rec: Network, characters: list[str], p: OcrParams = PARAMS) -> list[tuple[str, float]]:
    """TextRecognizer on the crops of one image: (text, score) per crop. The
    groups' calls are issued together."""
    batches = rec_batches(crops, p)
    outputs = await asyncio.gather(*(run_rec(batch) for _, batch in batches))
    results: list = [("", 0.0)] * len(crops)
    for (idx, _), (indices, probs) in zip(batches, outputs, strict=True):
        for i, decoded in zip(idx, ctc_decode_steps(indices, probs, characters, p), strict=True):
            results[i] = decoded
    return results


async def recognize_crops(
    crops: list[np.ndarray], run_cls: Network, run_rec: Network, characters: list[str], p: OcrParams = PARAMS
) -> list[tuple[str, float]]:
    """Classify (turning 180-degree crops) and recognise the crops of one image.

    With groups of one size for both networks, recogniser group k holds exactly
    classifier group k (the same sort; turning keeps a crop's shape), so each
    group goes on to the recogniser as soon as its own classes are back: the
    recogniser's first groups overlap the classifier's last ones."""
    if p.cls_batch_num != p.rec_batch_num:
        turned, _ = await classify_crops(crops, run_cls, p)
        return await read_crops(turned, run_rec, characters, p)
    turned = list(crops)
    results: list = [("", 0.0)] * len(crops)

    async def one_group(idx: np.ndarray) -> None:
        probs = await run_cls(np.stack([cls_input(turned[i], p) for i in idx]))
        apply_cls(turned, idx, probs, p)
        indices, step_probs = await run_rec(rec_input(turned, idx, p))
        for i, decoded in zip(idx, ctc_decode_steps(indices, step_probs, characters, p), strict=True):
            results[i] = decoded

    await asyncio.gather(*(one_group(idx) for idx in _groups(crops, p.rec_batch_num)))
    return results
