"""The OCR pipeline in one process: RapidOCR 1.4.4's three PP-OCR networks run
with onnxruntime directly, everything else by the functions of this package.

`OfflineOCR()(data)` answers one picture as RapidOCR does; `run_many` answers
several pictures with the network calls batched across them, as a server
with dynamic batching would, and gives the same answers.

What a batched multi-request version must keep per request (checked by
tests/ocr/test_ocr_logic.py on the test set):

- decoding, the global resize, the letterbox and the `Restore` record (the
  ratios of the LAST resize step and the top padding): boxes are mapped back
  with them;
- the detector input: its size comes from the picture's own size (short side
  to 736, multiples of 32), so pictures only share a detector call when their
  inputs have the same shape; padding one to another's shape would change its
  probability map. DB post-processing, box filtering and the reading-order
  sort are per picture;
- the crops, cut from that request's letterboxed picture;
- the recogniser groups: the crops of ONE picture, sorted by aspect ratio
  (np.argsort over that picture's crops), in consecutive groups of 6, each
  group zero-padded on the right to int(48 * its largest width/height ratio,
  at least 320/48). A crop's input therefore depends on the other crops of
  its group. Grouping the crops of several pictures together (sorting them
  all by aspect ratio) changes the padded widths and the answers: on the 13
  page pictures of the test set, 15 of 66 lines' scores moved by more than
  1e-3 (up to 0.035) and one text changed ("withserves" -> "with serves"),
  see `run_many(..., mix_rec_groups=True)`, which exists to measure this. Groups
  of different pictures that happen to have the same padded width may share
  one network call: batching does not change an item's output;
- the text_score filter and the mapping back, per picture.

What may be mixed freely across requests: the classifier (its 3x48x192 input
depends on one crop only, so the grouping by aspect ratio and the batch size
do not change any answer) and same-shaped detector / recogniser inputs in one
call. RapidOCR's result for a picture with no line left is (None, None); here
it is an empty `Lines`.
"""

from __future__ import annotations

from collections import defaultdict, deque
from pathlib import Path

import numpy as np

from pipelines.ocr import det
from pipelines.ocr.image import load_image
from pipelines.ocr.params import MODEL_FILES, PARAMS, OcrParams, character_list, rapidocr_models_dir
from pipelines.ocr.pipeline import assemble, detect
from pipelines.ocr.recognize import (
    Lines,
    aspect_order,
    apply_cls,
    classify_crops,
    cls_input,
    ctc_decode,
    read_crops,
    rec_input,
)

__all__ = ["OfflineOCR", "Lines"]


class OfflineOCR:
    """RapidOCR's pipeline over onnxruntime sessions on the models RapidOCR
    ships (or the same files in `models_dir`).

    `threads`: intra-op threads per session (None: onnxruntime's default).
    `exact_decode`: decode pictures exactly as RapidOCR does, also where the
    project deviates on purpose (pipelines.ocr.image)."""

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
        self.characters = character_list(models_dir / MODEL_FILES["rec"])
        self.params = params
        self.exact_decode = exact_decode
        self.calls: dict[str, deque] = defaultdict(lambda: deque(maxlen=4096))  # recent batch sizes per network

    def _run(self, name: str, batch: np.ndarray) -> np.ndarray:
        session = self.sessions[name]
        self.calls[name].append(int(batch.shape[0]))
        return session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    def run_det(self, batch: np.ndarray) -> np.ndarray:
        """[n,3,H,W] -> probability maps [n,1,H,W]."""
        return self._run("det", batch)

    def run_cls(self, batch: np.ndarray) -> np.ndarray:
        """[n,3,48,192] -> probabilities of "0" / "180" [n,2]."""
        return self._run("cls", batch)

    def run_rec(self, batch: np.ndarray) -> np.ndarray:
        """[n,3,48,W] -> per-step character probabilities [n,W/8,C]."""
        return self._run("rec", batch)

    def prepare(self, data) -> tuple[np.ndarray, np.ndarray, det.Restore]:
        """Bytes -> (detector input, letterboxed picture, Restore)."""
        return det.prepare(load_image(data, exact=self.exact_decode), self.params)

    def __call__(self, data) -> Lines:
        """One encoded picture -> its Lines (ValueError for a refused picture)."""
        p = self.params
        det_input, image, restore = self.prepare(data)
        boxes, scores, crops = detect(self.run_det(det_input), image, p)
        if len(boxes) == 0:
            return Lines()
        turned, _ = classify_crops(crops, self.run_cls, p)
        return assemble(boxes, scores, read_crops(turned, self.run_rec, self.characters, p), restore, p)

    def run_many(self, items, max_batch: int = 64, mix_rec_groups: bool = False) -> list[Lines | ValueError]:
        """Several encoded pictures -> one answer each (Lines, or the
        ValueError that refused that picture), with the network calls
        batched across pictures where that keeps every answer unchanged:
        same-shaped detector inputs together, classifier inputs in batches
        of up to `max_batch`, recogniser groups of equal padded width
        together. `mix_rec_groups=True` instead forms the recogniser groups
        from the crops of all pictures at once (NOT RapidOCR's answers; kept
        to measure the difference)."""
        p = self.params
        answers: list = [None] * len(items)
        prepared = {}
        for n, data in enumerate(items):
            try:
                prepared[n] = self.prepare(data)
            except ValueError as error:
                answers[n] = error

        by_shape = defaultdict(list)
        for n, (det_input, _, _) in prepared.items():
            by_shape[det_input.shape].append(n)
        detected = {}
        for members in by_shape.values():
            for start in range(0, len(members), max_batch):
                chunk = members[start : start + max_batch]
                maps = self.run_det(np.concatenate([prepared[n][0] for n in chunk]))
                for n, prob_map in zip(chunk, maps):
                    detected[n] = detect(prob_map[None], prepared[n][1], p)

        # classifier: every crop of every picture, in batches of max_batch
        crops = {n: list(detected[n][2]) for n in detected}
        keys = [(n, i) for n in crops for i in range(len(crops[n]))]
        for start in range(0, len(keys), max_batch):
            chunk = keys[start : start + max_batch]
            probs = self.run_cls(np.stack([cls_input(crops[n][i], p) for n, i in chunk]))
            for (n, i), row in zip(chunk, probs):
                apply_cls(crops[n], [i], row[None], p)

        # recogniser groups: per picture (RapidOCR), or across pictures (experiment)
        if mix_rec_groups:
            flat = [(n, i) for n in crops for i in range(len(crops[n]))]
            order = aspect_order([crops[n][i] for n, i in flat])
            groups = [[flat[k] for k in order[s : s + p.rec_batch_num]] for s in range(0, len(order), p.rec_batch_num)]
        else:
            groups = []
            for n in crops:
                order = aspect_order(crops[n]) if crops[n] else np.zeros(0, np.int64)
                groups += [[(n, int(i)) for i in order[s : s + p.rec_batch_num]] for s in range(0, len(order), p.rec_batch_num)]
        same_width = defaultdict(list)  # padded width -> [(group, its input)]
        for group in groups:
            members = [crops[n][i] for n, i in group]
            batch = rec_input(members, range(len(members)), p)
            same_width[batch.shape[3]].append((group, batch))
        texts: dict[tuple[int, int], tuple[str, float]] = {}
        for entries in same_width.values():
            start = 0
            while start < len(entries):
                chunk, size = [], 0
                while start < len(entries) and (not chunk or size + len(entries[start][0]) <= max_batch):
                    chunk.append(entries[start])
                    size += len(entries[start][0])
                    start += 1
                preds = self.run_rec(np.concatenate([batch for _, batch in chunk]))
                decoded = iter(ctc_decode(preds, self.characters))
                for group, _ in chunk:
                    for key in group:
                        texts[key] = next(decoded)

        for n in detected:
            boxes, scores, _ = detected[n]
            if len(boxes) == 0:
                answers[n] = Lines()
                continue
            recognized = [texts[(n, i)] for i in range(len(boxes))]
            answers[n] = assemble(boxes, scores, recognized, prepared[n][2], p)
        return answers
