"""The OCR model sets and the pipeline rules of the library each one follows.

A model set is three networks plus the rules of the library that ships
them: PP-OCRv6 as `rapidocr` 3.10 runs it (the default), and PP-OCRv4 as
`rapidocr-onnxruntime` 1.4.4 runs it (one switch away: tritonserver
--model-config-name=ppocrv4). The values are the libraries' config.yaml
files as constants, so the serving models need neither PyYAML nor the
packages (references/ocr.py reads the installed config.yaml files and the
tests check that they agree).

The two libraries share every threshold and size; they differ in four rules:
- `box_order`: 1.4.4 sorts boxes by their top-left corner and bubbles
  neighbours within 10 px (`"bubble"`); 3.x cuts the y-sorted boxes into
  rows wherever two successive tops are 10 px or more apart and sorts each
  row by x (`"rows"`);
- `score_decimals`: 3.x rounds each step's probability, and their mean, to
  5 decimals; 1.4.4 does not round (None);
- `drop_blank_texts`: 3.x drops lines whose text is blank before the score
  filter; 1.4.4 keeps them;
- the picture loader (`decode_rule`): transparency is handled differently
  (pipelines/image/decode.py, rules "rapidocr" and "rapid")."""

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
    box_order: str = "rows"
    score_decimals: int | None = 5
    drop_blank_texts: bool = True


RAPIDOCR_3 = OcrParams()
"""rapidocr 3.10's config.yaml and rules."""
RAPIDOCR_1_4 = OcrParams(box_order="bubble", score_decimals=None, drop_blank_texts=False)
"""rapidocr-onnxruntime 1.4.4's config.yaml and rules."""


@dataclass(frozen=True)
class ModelSet:
    name: str
    library: str
    """The package whose networks, files and rules the set follows."""
    params: OcrParams
    decode_rule: str
    """The `pipelines.image.decode` rule of the library's picture loader."""
    characters_file: str
    """The CTC dictionary the export writes beside ocr_recognize and ocr_bls."""
    classes: int
    """The recogniser's output classes (blank + characters + space)."""
    config_name: str
    """The --model-config-name that serves the set ("" for the default config.pbtxt)."""


MODEL_SETS = {
    "PP-OCRv6": ModelSet("PP-OCRv6", "rapidocr 3.10.0", RAPIDOCR_3, "rapidocr", "ppocrv6_characters.txt", 18710, ""),
    "PP-OCRv4": ModelSet("PP-OCRv4", "rapidocr-onnxruntime 1.4.4", RAPIDOCR_1_4, "rapid", "ppocrv4_characters.txt", 6625, "ppocrv4"),
}
DEFAULT_MODEL_SET = "PP-OCRv6"
PARAMS = MODEL_SETS[DEFAULT_MODEL_SET].params


def model_set(name: str | None) -> ModelSet:
    """The set named by a config's `model_set` parameter (default PP-OCRv6)."""
    name = name or DEFAULT_MODEL_SET
    if name not in MODEL_SETS:
        raise ValueError(f"unknown OCR model set {name!r}; expected one of {sorted(MODEL_SETS)}")
    return MODEL_SETS[name]


def model_set_of_classes(classes: int) -> ModelSet | None:
    """The set whose recogniser has `classes` outputs (what ocr_rec's metadata shows)."""
    return next((entry for entry in MODEL_SETS.values() if entry.classes == classes), None)
