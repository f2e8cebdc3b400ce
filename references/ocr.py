"""RapidOCR 1.4.4 (rapidocr-onnxruntime), the OCR pipelines' reference:
where its networks, configuration and CTC dictionary are, and `OfflineOCR`,
this repository's OCR composition (`pipelines.ocr.pipeline`) in one process
over onnxruntime sessions on the same files.

`OfflineOCR()(data)` answers one picture as the served `ocr` and `ocr_bls`
do. With `exact_decode=True` it decodes with RapidOCR's own loader
(`LoadImage`) instead of `pipelines.image.decode` (rule "rapid"), which
follows the loader except on purpose for palette PNGs, 16-bit grey PNGs and
CMYK JPEGs (`pipelines.image.decode.RAPID_DEVIATIONS`).

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
- the text_score filter and the mapping back.

What may be mixed freely across requests: the classifier (its 3x48x192 input
depends on one crop only) and same-shaped detector / recogniser inputs in one
call. RapidOCR's result for a picture with no line left is (None, None); here
it is an empty `Lines`.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.image.decode import decode_image
from pipelines.ocr.params import PARAMS, OcrParams
from pipelines.ocr.pipeline import Networks, Prepared, prepare, read_picture
from pipelines.ocr.recognize import Lines, ctc_steps

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


class OfflineOCR:
    """The served OCR composition over onnxruntime sessions on the networks
    RapidOCR ships (or the same files in `models_dir`).

    `threads`: intra-op threads per session (None: onnxruntime's default).
    `exact_decode`: decode with RapidOCR's own loader (see the module doc)."""

    def __init__(
        self,
        models_dir: Path | str | None = None,
        threads: int | None = None,
        params: OcrParams = PARAMS,
        exact_decode: bool = False,
    ):
        import onnxruntime as ort

        models_dir = Path(models_dir or rapidocr_models_dir())
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        self.sessions = {
            name: ort.InferenceSession(str(models_dir / file), sess_options=options, providers=["CPUExecutionProvider"])
            for name, file in MODEL_FILES.items()
        }
        self.params = params
        self.exact_decode = exact_decode
        self.calls: dict[str, deque] = defaultdict(lambda: deque(maxlen=4096))  # recent batch sizes per network
        self.networks = Networks(
            det=self._network("det"), cls=self._network("cls"), rec=self._network("rec"),
            characters=character_list(models_dir / MODEL_FILES["rec"]),
        )

    def run(self, name: str, batch: np.ndarray) -> np.ndarray:
        """One call of network `name` ("det", "cls", "rec") on a batch."""
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
            from rapidocr_onnxruntime.utils import LoadImage

            return LoadImage()(data)
        return decode_image(data, mode="rapid")

    def prepare(self, data) -> Prepared:
        """Bytes -> the detector's input, the letterboxed picture, the restore record."""
        return prepare(self.decode(data), self.params)

    def __call__(self, data) -> Lines:
        """One encoded picture -> its Lines (ValueError for a refused picture)."""
        return asyncio.run(read_picture(self.prepare(data), self.networks, self.params))
