"""RapidOCR 1.4.4's pipeline parameters (its config.yaml) and model files.

`PARAMS` holds the values of the package's config.yaml as constants, so the
serving models need neither PyYAML nor the package; `params_from_config`
reads a config.yaml into the same dataclass (the tests check that the two
agree). `rapidocr_model_files` locates the three networks and config.yaml in
the installed package."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


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

MODEL_FILES = {
    "det": "ch_PP-OCRv4_det_infer.onnx",
    "cls": "ch_ppocr_mobile_v2.0_cls_infer.onnx",
    "rec": "ch_PP-OCRv4_rec_infer.onnx",
}


def rapidocr_models_dir() -> Path:
    """The `models/` folder of the installed rapidocr-onnxruntime package."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("rapidocr-onnxruntime is not installed (requirements/nodeps.txt)")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@dataclass(frozen=True)
class ModelFiles:
    """Paths of RapidOCR's networks and pipeline configuration."""

    det: Path
    cls: Path
    rec: Path
    config: Path


def rapidocr_model_files() -> ModelFiles:
    """The det / cls / rec ONNX files and config.yaml of the installed
    rapidocr-onnxruntime package (FileNotFoundError if one is missing)."""
    models = rapidocr_models_dir()
    files = ModelFiles(
        det=models / MODEL_FILES["det"],
        cls=models / MODEL_FILES["cls"],
        rec=models / MODEL_FILES["rec"],
        config=models.parent / "config.yaml",
    )
    for path in (files.det, files.cls, files.rec, files.config):
        if not path.is_file():
            raise FileNotFoundError(f"rapidocr-onnxruntime is installed but {path} is missing")
    return files


def params_from_config(config_path: Path | str) -> OcrParams:
    """A RapidOCR config.yaml (Global / Det / Cls / Rec sections) as OcrParams
    (needs PyYAML; the serving code uses the `PARAMS` constants instead)."""
    import yaml

    with open(config_path, "rb") as handle:
        config = yaml.safe_load(handle)
    g, d, c, r = config["Global"], config["Det"], config["Cls"], config["Rec"]
    return OcrParams(
        text_score=float(g["text_score"]),
        min_height=int(g["min_height"]),
        width_height_ratio=g["width_height_ratio"],
        max_side_len=int(g["max_side_len"]),
        min_side_len=int(g["min_side_len"]),
        det_limit_side_len=int(d["limit_side_len"]),
        det_limit_type=str(d["limit_type"]),
        det_mean=tuple(d["mean"]),
        det_std=tuple(d["std"]),
        det_thresh=float(d.get("thresh", 0.3)),
        det_box_thresh=float(d.get("box_thresh", 0.5)),
        det_max_candidates=int(d.get("max_candidates", 1000)),
        det_unclip_ratio=float(d.get("unclip_ratio", 1.6)),
        det_use_dilation=bool(d.get("use_dilation", True)),
        det_score_mode=str(d.get("score_mode", "fast")),
        cls_image_shape=tuple(c["cls_image_shape"]),
        cls_batch_num=int(c["cls_batch_num"]),
        cls_thresh=float(c["cls_thresh"]),
        cls_labels=tuple(str(label) for label in c["label_list"]),
        rec_image_shape=tuple(r["rec_img_shape"]),
        rec_batch_num=int(r["rec_batch_num"]),
    )


def character_list(rec_onnx_path: Path | str) -> list[str]:
    """CTC dictionary as RapidOCR builds it: "blank" (index 0), the lines of
    the model's `character` metadata (str.splitlines), then a space. Read
    with onnxruntime (a serving dependency; the onnx package is not needed)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(rec_onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    if "character" not in metadata:
        raise ValueError(f"{rec_onnx_path} has no 'character' metadata (not a PP-OCR recogniser?)")
    return ["blank", *metadata["character"].splitlines(), " "]
