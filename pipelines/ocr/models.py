"""Batch functions of the OCR Python models (their model.py are adapters).

`ocr_det_pre` decodes and prepares one picture per request; `ocr_recognize`
turns the detector's map into text lines, calling `ocr_cls` and `ocr_rec`
through BLS; `ocr_bls` does the whole flow in one model. All three share
the functions of pipelines.ocr, so the ensemble and the BLS model give the
same answers."""

from __future__ import annotations

import os

import numpy as np

from pipelines.ocr import det
from pipelines.ocr.image import load_image
from pipelines.ocr.pipeline import lines_from_detection
from pipelines.serving.tensors import RequestError

CHARACTERS_FILE = "characters.txt"
DET_MODEL, DET_INPUT, DET_OUTPUT = "ocr_det", "x", "sigmoid_0.tmp_0"
CLS_MODEL, CLS_INPUT, CLS_OUTPUT = "ocr_cls", "x", "save_infer_model/scale_0.tmp_1"
REC_MODEL, REC_INPUT, REC_OUTPUT = "ocr_rec", "x", "softmax_11.tmp_0"


def read_characters(args: dict) -> list[str]:
    """The CTC dictionary the export wrote beside the model (blank first)."""
    path = os.path.join(args["model_repository"], args["model_version"], CHARACTERS_FILE)
    with open(path, encoding="utf-8") as handle:
        return handle.read().split("\n")


def prepare_request(encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray, det.Restore]:
    try:
        return det.prepare(load_image(encoded))
    except ValueError as error:
        raise RequestError(f"input 'input_image': {error}") from None


def make_det_pre(config: dict, args: dict):
    def process(requests):
        answers = []
        for tensors in requests:  # one picture per request; nothing to stack
            try:
                det_input, image, restore = prepare_request(tensors["input_image"])
            except RequestError as error:
                answers.append(error)
                continue
            answers.append({"det_input": det_input, "image": image, "restore": restore.as_array()})
        return answers

    return process


def _network_callers(pb_utils):
    from pipelines.serving.bls import call

    def run_cls(batch):
        return call(pb_utils, CLS_MODEL, {CLS_INPUT: batch}, [CLS_OUTPUT])[CLS_OUTPUT]

    def run_rec(batch):
        return call(pb_utils, REC_MODEL, {REC_INPUT: batch}, [REC_OUTPUT])[REC_OUTPUT]

    def run_det(batch):
        return call(pb_utils, DET_MODEL, {DET_INPUT: batch}, [DET_OUTPUT])[DET_OUTPUT]

    return run_det, run_cls, run_rec


def make_recognize(pb_utils):
    def make(config: dict, args: dict):
        characters = read_characters(args)
        _, run_cls, run_rec = _network_callers(pb_utils)

        def process(requests):
            return [
                lines_from_detection(
                    t["prob_map"], t["image"], det.Restore.from_array(t["restore"]), run_cls, run_rec, characters
                ).as_outputs()
                for t in requests
            ]

        return process

    return make


def make_bls(pb_utils):
    def make(config: dict, args: dict):
        characters = read_characters(args)
        run_det, run_cls, run_rec = _network_callers(pb_utils)

        def process(requests):
            answers = []
            for tensors in requests:
                try:
                    det_input, image, restore = prepare_request(tensors["input_image"])
                except RequestError as error:
                    answers.append(error)
                    continue
                lines = lines_from_detection(run_det(det_input), image, restore, run_cls, run_rec, characters)
                answers.append(lines.as_outputs())
            return answers

        return process

    return make
