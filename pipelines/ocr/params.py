"""RapidOCR 1.4.4's pipeline parameters (its config.yaml).

`PARAMS` holds the values of the package's config.yaml as constants, so the
serving models need neither PyYAML nor the package
(references/ocr.py reads the installed config.yaml into the same
dataclass, and the tests check that the two agree)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OcrParams:
    text_score: float = 0.5
    min_height: int = 30
    width_height_ratio: float = 8
    max_side_len: int = 2000
    min_side_len: int = 30
    det_limit_side_len: int = 736
    det_limit_type: str = "min"
    det_mean: tuple = (0.5, 0.5, 0.5)
    det_std: tuple = (0.5, 0.5, 0.5)
    det_thresh: float = 0.3
    det_box_thresh: float = 0.5
    det_max_candidates: int = 1000
    det_unclip_ratio: float = 1.6
    det_use_dilation: bool = True
    det_score_mode: str = "fast"
    cls_image_shape: tuple = (3, 48, 192)
    cls_batch_num: int = 6
    cls_thresh: float = 0.9
    cls_labels: tuple = ("0", "180")
    rec_image_shape: tuple = (3, 48, 320)
    rec_batch_num: int = 6


PARAMS = OcrParams()
