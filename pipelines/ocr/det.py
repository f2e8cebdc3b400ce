"""Image preparation for the DB text detector and its post-processing, as
RapidOCR does them (rapidocr 3.x: main.py, utils/process_img.py,
ch_ppocr_det; rapidocr-onnxruntime 1.4.4 is the same but for the reading
order, see `OcrParams.box_order`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import pyclipper
from shapely.geometry import Polygon

from pipelines.image.lut import apply_tables, channel_tables
from pipelines.ocr.params import PARAMS, OcrParams


@dataclass
class Restore:
    """How to map detector coordinates back onto the original picture."""

    ratio_h: float
    ratio_w: float
    pad_top: int
    raw_h: int
    raw_w: int

    def as_array(self) -> np.ndarray:
        return np.array([self.ratio_h, self.ratio_w, self.pad_top, self.raw_h, self.raw_w], dtype=np.float32)

    @classmethod
    def from_array(cls, values: np.ndarray) -> "Restore":
        r = [float(v) for v in np.asarray(values).reshape(-1)]
        return cls(r[0], r[1], int(r[2]), int(r[3]), int(r[4]))


def _resize_to_32(img: np.ndarray, ratio: float) -> tuple[np.ndarray, float, float]:
    h, w = img.shape[:2]
    resize_h = int(round(int(h * ratio) / 32) * 32)
    resize_w = int(round(int(w * ratio) / 32) * 32)
    if resize_w <= 0 or resize_h <= 0:
        raise ValueError(f"image of {w}x{h} pixels is too small to resize")
    return cv2.resize(img, (resize_w, resize_h)), h / resize_h, w / resize_w


def global_resize(img: np.ndarray, p: OcrParams = PARAMS) -> tuple[np.ndarray, float, float]:
    """RapidOCR.preprocess: shrink the long side to max_side_len, then grow the
    short side to min_side_len (each rounded to multiples of 32). As in
    RapidOCR, the second step's ratios replace the first's."""
    ratio_h = ratio_w = 1.0
    h, w = img.shape[:2]
    if max(h, w) > p.max_side_len:
        img, ratio_h, ratio_w = _resize_to_32(img, p.max_side_len / (h if h > w else w))
    h, w = img.shape[:2]
    if min(h, w) < p.min_side_len:
        img, ratio_h, ratio_w = _resize_to_32(img, p.min_side_len / (h if h < w else w))
    return img, ratio_h, ratio_w


def letterbox(img: np.ndarray, p: OcrParams = PARAMS) -> tuple[np.ndarray, int]:
    """RapidOCR.maybe_add_letterbox: pad short or very wide images with black
    rows above and below; returns the padded image and the top padding."""
    h, w = img.shape[:2]
    wide = p.width_height_ratio != -1 and w / h > p.width_height_ratio
    if h <= p.min_height or wide:
        new_h = max(int(w / p.width_height_ratio), p.min_height) * 2
        pad = int(abs(new_h - h) / 2)
        return cv2.copyMakeBorder(img, pad, pad, 0, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0)), pad
    return img, 0


def prepare(img_bgr: np.ndarray, p: OcrParams = PARAMS) -> tuple[np.ndarray, np.ndarray, Restore]:
    """Decoded BGR picture -> (detector input [1,3,H,W] float32, the letterboxed
    picture the crops are cut from, Restore)."""
    raw_h, raw_w = img_bgr.shape[:2]
    img, ratio_h, ratio_w = global_resize(img_bgr, p)
    img, pad_top = letterbox(img, p)
    return det_input(img, p), img, Restore(ratio_h, ratio_w, pad_top, raw_h, raw_w)


def det_scale(h: int, w: int, p: OcrParams = PARAMS) -> float:
    """DetPreProcess.resize's ratio: limit_type 'min' grows the short side to
    limit_side_len (never shrinks); 'max' shrinks the long side to it."""
    limit = p.det_limit_side_len
    if p.det_limit_type == "max":
        return limit / (h if h > w else w) if max(h, w) > limit else 1.0
    return limit / (h if h < w else w) if min(h, w) < limit else 1.0


def det_normalize(pixels: np.ndarray, mean: tuple, std: tuple) -> np.ndarray:
    """DetPreProcess's normalisation: x/255, (x - mean) / std in float64, then float32."""
    return ((pixels.astype("float32") * (1 / 255.0) - np.array(mean)) / np.array(std)).astype(np.float32)


@lru_cache(maxsize=4)
def _det_tables(mean: tuple, std: tuple) -> np.ndarray:
    return channel_tables(lambda pixels: det_normalize(pixels, mean, std))


def det_input(img: np.ndarray, p: OcrParams = PARAMS) -> np.ndarray:
    """DetPreProcess: resize by `det_scale` to multiples of 32 (each side
    int() then rounded), then `det_normalize`: float32 NCHW [1,3,H,W]. On
    uint8 pictures it runs as per-channel tables (bit for bit the same
    floats, an eighth of the time)."""
    h, w = img.shape[:2]
    resized, _, _ = _resize_to_32(img, det_scale(h, w, p))
    if resized.dtype != np.uint8:  # exact decoding keeps 16-bit samples
        return np.ascontiguousarray(det_normalize(resized, p.det_mean, p.det_std).transpose(2, 0, 1)[None])
    return apply_tables(resized[None], _det_tables(tuple(p.det_mean), tuple(p.det_std)))


def _mini_box(contour: np.ndarray) -> tuple[np.ndarray, float]:
    rect = cv2.minAreaRect(contour)
    points = sorted(list(cv2.boxPoints(rect)), key=lambda x: x[0])
    i1, i4 = (0, 1) if points[1][1] > points[0][1] else (1, 0)
    i2, i3 = (2, 3) if points[3][1] > points[2][1] else (3, 2)
    return np.array([points[i1], points[i2], points[i3], points[i4]]), min(rect[1])


def _box_score_fast(pred: np.ndarray, box: np.ndarray) -> float:
    h, w = pred.shape[:2]
    box = box.copy()
    xmin = np.clip(np.floor(box[:, 0].min()).astype(np.int32), 0, w - 1)
    xmax = np.clip(np.ceil(box[:, 0].max()).astype(np.int32), 0, w - 1)
    ymin = np.clip(np.floor(box[:, 1].min()).astype(np.int32), 0, h - 1)
    ymax = np.clip(np.ceil(box[:, 1].max()).astype(np.int32), 0, h - 1)
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    box[:, 0] -= xmin
    box[:, 1] -= ymin
    cv2.fillPoly(mask, box.reshape(1, -1, 2).astype(np.int32), 1)
    return cv2.mean(pred[ymin : ymax + 1, xmin : xmax + 1], mask)[0]


def _box_score_slow(pred: np.ndarray, contour: np.ndarray) -> float:
    """score_mode 'slow': mean of the map inside the contour polygon itself."""
    h, w = pred.shape[:2]
    contour = contour.reshape(-1, 2).copy()
    xmin, xmax = np.clip(contour[:, 0].min(), 0, w - 1), np.clip(contour[:, 0].max(), 0, w - 1)
    ymin, ymax = np.clip(contour[:, 1].min(), 0, h - 1), np.clip(contour[:, 1].max(), 0, h - 1)
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    contour[:, 0] -= xmin
    contour[:, 1] -= ymin
    cv2.fillPoly(mask, contour.reshape(1, -1, 2).astype(np.int32), 1)
    return cv2.mean(pred[ymin : ymax + 1, xmin : xmax + 1], mask)[0]


def _unclip(box: np.ndarray, ratio: float) -> np.ndarray:
    poly = Polygon(box)
    distance = poly.area * ratio / poly.length
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    return np.array(offset.Execute(distance)).reshape((-1, 1, 2))


def _order_clockwise(pts: np.ndarray) -> np.ndarray:
    by_x = pts[np.argsort(pts[:, 0]), :]
    left, right = by_x[:2, :], by_x[2:, :]
    tl, bl = left[np.argsort(left[:, 1]), :]
    tr, br = right[np.argsort(right[:, 1]), :]
    return np.array([tl, tr, br, bl], dtype="float32")


def db_boxes(prob_map: np.ndarray, image_shape: tuple[int, int], p: OcrParams = PARAMS) -> tuple[np.ndarray, list[float]]:
    """DBPostProcess: threshold the map [1,1,h,w] at det_thresh, dilate 2x2,
    take at most det_max_candidates contours; drop boxes whose short side is
    < 3, whose score (fast: mean inside the min-area box; slow: inside the
    contour) is < det_box_thresh, or whose unclipped box is < 5; scale to
    `image_shape` (h, w) with rounding. Returns int32 boxes [N,4,2] and scores."""
    src_h, src_w = image_shape
    pred = prob_map[0, 0]
    bitmap = (pred > p.det_thresh).astype(np.uint8)
    if p.det_use_dilation:
        bitmap = cv2.dilate(bitmap, np.array([[1, 1], [1, 1]]))
    height, width = bitmap.shape
    contours, _ = cv2.findContours((bitmap * 255).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    boxes, scores = [], []
    for contour in contours[: p.det_max_candidates]:
        points, short_side = _mini_box(contour)
        if short_side < 3:
            continue
        if p.det_score_mode == "fast":
            score = _box_score_fast(pred, points.reshape(-1, 2))
        else:
            score = _box_score_slow(pred, contour)
        if p.det_box_thresh > score:
            continue
        box, short_side = _mini_box(_unclip(points, p.det_unclip_ratio))
        if short_side < 5:
            continue
        box[:, 0] = np.clip(np.round(box[:, 0] / width * src_w), 0, src_w)
        box[:, 1] = np.clip(np.round(box[:, 1] / height * src_h), 0, src_h)
        boxes.append(box.astype(np.int32))
        scores.append(score)
    return np.array(boxes, dtype=np.int32).reshape(-1, 4, 2), scores


def filter_boxes(boxes: np.ndarray, scores, image_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """TextDetector.filter_tag_det_res: order corners clockwise from top-left,
    clip to the image (truncating to integers), drop boxes whose first edges
    are <= 3 px. Returns float32 boxes [N,4,2] and their float32 scores."""
    src_h, src_w = image_shape
    kept_boxes, kept_scores = [], []
    for box, score in zip(np.asarray(boxes, dtype=np.int32).reshape(-1, 4, 2), scores):
        box = _order_clockwise(box)
        box[:, 0] = np.clip(box[:, 0], 0, src_w - 1).astype(np.int32)
        box[:, 1] = np.clip(box[:, 1], 0, src_h - 1).astype(np.int32)
        if int(np.linalg.norm(box[0] - box[1])) <= 3 or int(np.linalg.norm(box[0] - box[3])) <= 3:
            continue
        kept_boxes.append(box)
        kept_scores.append(score)
    return np.array(kept_boxes, dtype=np.float32).reshape(-1, 4, 2), np.array(kept_scores, dtype=np.float32)


def boxes_from_map(prob_map: np.ndarray, image_shape: tuple[int, int], p: OcrParams = PARAMS) -> tuple[np.ndarray, np.ndarray]:
    """DBPostProcess + filter_tag_det_res: the detector's probability map
    [1,1,h,w] -> boxes [N,4,2] float32 in the coordinates of the image the
    detector saw (letterboxed), and their scores (not yet in reading order)."""
    boxes, scores = db_boxes(prob_map, image_shape, p)
    return filter_boxes(boxes, scores, image_shape)


def reading_order(boxes: np.ndarray, p: OcrParams = PARAMS) -> np.ndarray:
    """Indices of `boxes` in reading order, by `p.box_order`:
    "rows" (rapidocr 3.x's sorted_boxes): a stable sort by the top-left
    corner's y, a new row wherever two successive y are 10 px or more apart,
    then by x within each row; "bubble" (1.4.4): sorted by (y, x) of the
    top-left corner, then neighbours less than 10 px apart in y swapped
    while out of x order."""
    if p.box_order == "rows":
        if len(boxes) == 0:
            return np.zeros(0, dtype=np.int64)
        by_y = np.argsort(boxes[:, 0, 1], kind="stable")
        rows = np.concatenate([[0], np.cumsum(np.diff(boxes[by_y, 0, 1]) >= 10)])
        return by_y[np.lexsort((boxes[by_y, 0, 0], rows))].astype(np.int64)
    order = sorted(range(len(boxes)), key=lambda i: (boxes[i][0][1], boxes[i][0][0]))
    for i in range(len(order) - 1):
        for j in range(i, -1, -1):
            a, b = boxes[order[j]], boxes[order[j + 1]]
            if abs(b[0][1] - a[0][1]) < 10 and b[0][0] < a[0][0]:
                order[j], order[j + 1] = order[j + 1], order[j]
            else:
                break
    return np.array(order, dtype=np.int64)


def to_original(boxes: np.ndarray, restore: Restore) -> np.ndarray:
    """RapidOCR's map_boxes_to_original: undo the letterbox, then the global resize,
    and clip to the original picture."""
    out = np.array(boxes, dtype=np.float32).reshape(-1, 4, 2).copy()
    out[:, :, 1] -= restore.pad_top
    out[:, :, 0] *= restore.ratio_w
    out[:, :, 1] *= restore.ratio_h
    out = np.where(out < 0, 0, out)
    out[..., 0] = np.where(out[..., 0] > restore.raw_w, restore.raw_w, out[..., 0])
    out[..., 1] = np.where(out[..., 1] > restore.raw_h, restore.raw_h, out[..., 1])
    return out
