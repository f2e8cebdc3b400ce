"""The OCR pipelines' references: the libraries that ship each model set
(`rapidocr` 3.10 for PP-OCRv6, `rapidocr-onnxruntime` 1.4.4 for PP-OCRv4),
where their networks and configuration are, their answers as `Lines`
(`LibraryOCR`), and `OfflineOCR`, this repository's OCR composition
(`pipelines.ocr.pipeline`) in one process over onnxruntime sessions on the
same files.

`OfflineOCR(model_set=...)(data)` answers one picture as the served `ocr` and
`ocr_bls` do. With `exact_decode=True` it decodes with the library's own
loader instead of `pipelines.image.decode`, which follows the loader except
on purpose for palette PNGs, 16-bit grey PNGs and CMYK JPEGs
(`pipelines.image.decode.RAPID_DEVIATIONS`).

What a batched multi-request version must keep per picture (checked by
tests/ocr/test_ocr_logic.py on the test set):

- decoding, the global resize, the letterbox and the `Restore` record (the
  ratios of the LAST resize step and the top padding): boxes are mapped back
  with them;
- the detector input: its size comes from the picture's own size (short side
  to 736, multiples of 32), so pictures only share a detector call when their
  inputs have the same shape; padding one to another's shape would change its
  probability map. DB post-processing, box filtering and the reading-order
  sort are per picture;
- the crops, cut from that picture's letterboxed image;
- the recogniser groups: the crops of ONE picture, sorted by aspect ratio
  (np.argsort over that picture's crops), in consecutive groups of 6, each
  group zero-padded on the right to int(48 * its largest width/height ratio,
  at least 320/48). A crop's input therefore depends on the other crops of
  its group: grouping the crops of several pictures together changes padded
  widths and answers (measured by the test
  `test_recogniser_groups_must_stay_per_picture`). Groups of different
  pictures that happen to have the same padded width may share one network
  call: batching does not change an item's output;
- the blank-text and text_score filters and the mapping back.

What may be mixed freely across requests: the classifier (its 3x48x192 input
depends on one crop only) and same-shaped detector / recogniser inputs in one
call. A library's result for a picture with no line left is empty; here it
is an empty `Lines`.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections import defaultdict, deque
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import yaml

from pipelines.image.decode import decode_image
from pipelines.ocr.params import DEFAULT_MODEL_SET, ModelSet, OcrParams, model_set
from pipelines.ocr.pipeline import Networks, Prepared, prepare, read_picture
from pipelines.ocr.recognize import Lines, ctc_steps

PACKAGES = {"PP-OCRv6": "rapidocr", "PP-OCRv4": "rapidocr_onnxruntime"}
"""The Python package that ships each model set."""
LIBRARY_FILES = {
    "PP-OCRv6": {"det": "PP-OCRv6_det_small.onnx", "cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx", "rec": "PP-OCRv6_rec_small.onnx"},
    "PP-OCRv4": {"det": "ch_PP-OCRv4_det_infer.onnx", "cls": "ch_ppocr_mobile_v2.0_cls_infer.onnx", "rec": "ch_PP-OCRv4_rec_infer.onnx"},
}
"""Each set's det / cls / rec files in its package's models/ folder."""
SERVED_FILES = {
    "PP-OCRv6": {"det": "ocr_det/1/model.onnx", "cls": "ocr_cls/1/model.onnx", "rec": "ocr_rec/1/model.onnx"},
    "PP-OCRv4": {"det": "ocr_det/1/ppocrv4.onnx", "cls": "ocr_cls/1/model.onnx", "rec": "ocr_rec/1/ppocrv4.onnx"},
}
"""Where the export places each set's networks in the model repository."""


def package_dir(set_name: str = DEFAULT_MODEL_SET) -> Path:
    """The installed package folder of the library that ships `set_name`."""
    package = PACKAGES[model_set(set_name).name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{package} is not installed (requirements/nodeps.txt, requirements/dev.txt)")
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class ModelFiles:
    """Paths of a library's networks and pipeline configuration."""

    det: Path
    cls: Path
    rec: Path
    config: Path


def library_model_files(set_name: str = DEFAULT_MODEL_SET) -> ModelFiles:
    """The det / cls / rec ONNX files and config.yaml of the library that
    ships `set_name` (FileNotFoundError if one is missing)."""
    root = package_dir(set_name)
    names = LIBRARY_FILES[model_set(set_name).name]
    files = ModelFiles(*(root / "models" / names[part] for part in ("det", "cls", "rec")), config=root / "config.yaml")
    for path in (files.det, files.cls, files.rec, files.config):
        if not path.is_file():
            raise FileNotFoundError(f"{PACKAGES[model_set(set_name).name]} is installed but {path} is missing")
    return files


def params_from_config(config_path: Path | str, set_name: str = DEFAULT_MODEL_SET) -> OcrParams:
    """A library's config.yaml (Global / Det / Cls / Rec sections) as
    OcrParams; the rules that are code, not configuration (box order, score
    rounding, blank texts) are the set's."""
    with open(config_path, "rb") as handle:
        config = yaml.safe_load(handle)
    g, d, c, r = config["Global"], config["Det"], config["Cls"], config["Rec"]
    return replace(
        model_set(set_name).params,
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


def _session(path: Path | str, threads: int | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def character_list(rec_onnx_path: Path | str) -> list[str]:
    """CTC dictionary as RapidOCR builds it: "blank" (index 0), the lines of
    the model's `character` metadata (str.splitlines), then a space."""
    metadata = _session(rec_onnx_path).get_modelmeta().custom_metadata_map
    if "character" not in metadata:
        raise ValueError(f"{rec_onnx_path} has no 'character' metadata (not a PP-OCR recogniser?)")
    return ["blank", *metadata["character"].splitlines(), " "]


def lines_from_library(boxes, texts, scores) -> Lines:
    """A library's boxes / texts / scores as `Lines` (no detector scores: NaN)."""
    texts = list(texts or [])
    return Lines(
        boxes=np.asarray(boxes if texts else np.zeros((0, 4, 2)), dtype=np.float32).reshape(-1, 4, 2),
        box_scores=np.full(len(texts), np.nan, dtype=np.float32),
        texts=texts,
        text_scores=np.asarray(scores if texts else [], dtype=np.float64),
    )


class LibraryOCR:
    """The library that ships a model set, called as a user calls it, with
    its answer as `Lines`. `engine`: "onnxruntime" (the default of both) or,
    for rapidocr 3.x, "openvino" at its default precision."""

    def __init__(self, set_name: str = DEFAULT_MODEL_SET, engine: str = "onnxruntime"):
        self.model_set: ModelSet = model_set(set_name)
        if self.model_set.name == "PP-OCRv4":
            if engine != "onnxruntime":
                raise ValueError("rapidocr-onnxruntime runs onnxruntime only (rapidocr-openvino is perf/rapidocr_baseline.py's)")
            from rapidocr_onnxruntime import RapidOCR as OldRapidOCR  # only where the PP-OCRv4 reference is asked for

            self.engine = OldRapidOCR()
        else:
            from rapidocr import EngineType, RapidOCR  # the package logs at import: only where it is asked for

            kind = EngineType(engine)
            self.engine = RapidOCR(params={"Global.log_level": "warning", **{f"{part}.engine_type": kind for part in ("Det", "Cls", "Rec")}})

    def __call__(self, data: bytes) -> Lines:
        if self.model_set.name == "PP-OCRv4":
            rows, _ = self.engine(data)
            rows = rows or []
            return lines_from_library([row[0] for row in rows], [row[1] for row in rows], [row[2] for row in rows])
        result = self.engine(data)
        return lines_from_library(result.boxes, result.txts, result.scores)


class OfflineOCR:
    """The served OCR composition over onnxruntime sessions on a model set's
    networks: the library's files, or the served ones (`models_dir` = the
    model repository, its SERVED_FILES layout).

    `threads`: intra-op threads per session (None: onnxruntime's default).
    `exact_decode`: decode with the library's own loader (see the module doc)."""

    def __init__(
        self,
        models_dir: Path | str | None = None,
        threads: int | None = None,
        params: OcrParams | None = None,
        exact_decode: bool = False,
        model_set_name: str = DEFAULT_MODEL_SET,
    ):
        self.model_set = model_set(model_set_name)
        if models_dir is None:
            files = library_model_files(self.model_set.name)
            paths = {"det": files.det, "cls": files.cls, "rec": files.rec}
        else:
            paths = {part: Path(models_dir) / relative for part, relative in SERVED_FILES[self.model_set.name].items()}
        self.sessions = {name: _session(path, threads) for name, path in paths.items()}
        self.params = params or self.model_set.params
        self.exact_decode = exact_decode
        self.calls: dict[str, deque] = defaultdict(lambda: deque(maxlen=4096))  # recent batch sizes per network
        self.networks = Networks(
            det=self._network("det"), cls=self._network("cls"), rec=self._network("rec"), characters=character_list(paths["rec"])
        )

    def run(self, name: str, batch: np.ndarray) -> np.ndarray:
        """One call of network `name` ("det", "cls", "rec") on a batch (its first output)."""
        session = self.sessions[name]
        self.calls[name].append(int(batch.shape[0]))
        return session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    def _network(self, name: str):
        async def run(batch: np.ndarray):
            output = self.run(name, batch)
            return ctc_steps(output) if name == "rec" else output

        return run

    def decode(self, data) -> np.ndarray:
        if self.exact_decode:
            return LibraryLoader(self.model_set.name)(data)
        return decode_image(data, mode=self.model_set.decode_rule)

    def prepare(self, data) -> Prepared:
        """Bytes -> the detector's input, the letterboxed picture, the restore record."""
        return prepare(self.decode(data), self.params)

    def __call__(self, data) -> Lines:
        """One encoded picture -> its Lines (ValueError for a refused picture)."""
        return asyncio.run(read_picture(self.prepare(data), self.networks, self.params))


class LibraryLoader:
    """The picture loader (`LoadImage`) of the library that ships a model set."""

    def __init__(self, set_name: str = DEFAULT_MODEL_SET):
        if model_set(set_name).name == "PP-OCRv4":
            from rapidocr_onnxruntime.utils import LoadImage  # the reference's own loader, on request only
        else:
            from rapidocr.utils.load_image import LoadImage  # the package logs at import: on request only
        self.load = LoadImage()

    def __call__(self, data) -> np.ndarray:
        return self.load(data)
