"""Batch functions of the OCR Python models (their model.py are adapters).

- `ocr_det_pre`: a decoded picture (image_decode's `image_rapid`, RapidOCR's
  loader rules) -> the detector input, the letterboxed picture, the restore
  record;
- `ocr_recognize`: the detector's map -> text lines, calling `ocr_cls` and
  `ocr_rec` through async BLS;
- `ocr_bls`: the whole flow in one model (decode and prepare here, then
  `ocr_det`, `ocr_cls`, `ocr_rec` through async BLS).
All three run `pipelines.ocr.pipeline`, so the ensemble and the BLS model
give the same answers. Each reads the model set it serves from its config's
`model_set` parameter (pipelines/ocr/params.py: the library's rules and the
CTC dictionary file)."""

from __future__ import annotations

import numpy as np

from pipelines.image.decode import decode_image
from pipelines.ocr import det
from pipelines.ocr.params import ModelSet, model_set
from pipelines.ocr.pipeline import Networks, Prepared, prepare, read_detection, read_picture
from pipelines.serving.batching import prepared
from pipelines.serving.partition import per_item, per_item_async
from pipelines.serving.python_model import ModelContext, RequestTensors
from pipelines.serving.tensors import RequestError

DET_MODEL, DET_INPUT, DET_OUTPUT = "ocr_det", "x", "sigmoid_0.tmp_0"
CLS_MODEL, CLS_INPUT, CLS_OUTPUT = "ocr_cls", "x", "save_infer_model/scale_0.tmp_1"
REC_MODEL, REC_INPUT, REC_OUTPUT = "ocr_rec", "x", "softmax_11.tmp_0"
# the recogniser's in-graph per-step argmax / max (export/ocr.py): what CTC
# decoding reads, [n, T] instead of the softmax's [n, T, classes]
REC_INDICES, REC_SCORES = "ctc_indices", "ctc_scores"


def served_set(context: ModelContext) -> ModelSet:
    """The model set named by the config's `model_set` parameter."""
    return model_set(context.parameter("model_set"))


def read_characters(context: ModelContext, served: ModelSet) -> list[str]:
    """The set's CTC dictionary, written by the export beside the model (blank first)."""
    return context.file(served.characters_file).read_text(encoding="utf-8").split("\n")


def networks(context: ModelContext, served: ModelSet) -> Networks:
    """The three networks as async BLS calls to their models."""
    bls = context.bls
    return Networks(
        det=bls.network(DET_MODEL, DET_INPUT, DET_OUTPUT),
        cls=bls.network(CLS_MODEL, CLS_INPUT, CLS_OUTPUT),
        rec=bls.network(REC_MODEL, REC_INPUT, (REC_INDICES, REC_SCORES)),
        characters=read_characters(context, served),
    )


def prepare_picture(image: np.ndarray, input_name: str, served: ModelSet) -> Prepared:
    try:
        return prepare(image, served.params)
    except ValueError as error:
        raise RequestError(f"input '{input_name}': {error}") from None


def make_det_pre(context: ModelContext):
    served = served_set(context)

    def one(tensors: RequestTensors) -> dict[str, np.ndarray]:
        prepared = prepare_picture(tensors["image"], "image", served)
        return {"det_input": prepared.det_input, "letterboxed": prepared.image, "restore": prepared.restore.as_array()}

    return per_item(one)  # one picture per request: nothing to stack


def make_recognize(context: ModelContext):
    served = served_set(context)
    nets = networks(context, served)

    async def one(tensors: RequestTensors):
        restore = det.Restore.from_array(tensors["restore"])
        return (await read_detection(tensors["prob_map"], tensors["image"], restore, nets, served.params)).as_outputs()

    return per_item_async(one)


def make_bls(context: ModelContext):
    served = served_set(context)
    nets = networks(context, served)

    def decode(tensors: RequestTensors) -> Prepared:
        try:
            image = decode_image(tensors["input_image"], mode=served.decode_rule)
        except ValueError as error:
            raise RequestError(f"input 'input_image': {error}") from None
        return prepare_picture(image, "input_image", served)

    async def read(prepared: Prepared):
        return (await read_picture(prepared, nets, served.params)).as_outputs()

    return prepared(decode, per_item_async(read))
