"""Inputs shared by the OCR logic tests of both model sets
(test_ocr_logic.py: PP-OCRv4 / rapidocr-onnxruntime 1.4.4;
test_ocr_logic_v6.py: PP-OCRv6 / rapidocr 3.10): boxes, probability maps,
softmax outputs and stand-in networks the libraries' code and ours are fed
alike; and the matching of OfflineOCR's network calls with a library's
(`LibraryRecord`, `CheckedOCR`)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter

import cv2
import numpy as np

from pipelines.ocr.recognize import cls_input, ctc_steps, rec_input, rec_width
from references.ocr import OfflineOCR


def networks_of(run):
    """A synchronous network as the awaitable the composition takes."""

    async def network(batch):
        return run(batch)

    return network


def box_at(x: float, y: float, w: float = 50, h: float = 20) -> np.ndarray:
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float32)


def one_hot_preds(steps: list[int], probs: list[float], classes: int = 8) -> np.ndarray:
    """A softmax [1,T,C] whose step t peaks at class steps[t] with probability probs[t]."""
    preds = np.zeros((1, len(steps), classes), dtype=np.float32)
    for t, (k, p) in enumerate(zip(steps, probs)):
        preds[0, t, :] = (1 - p) / (classes - 1)
        preds[0, t, k] = p
    return preds


def random_softmax(seed: int, rows: int, steps: int, classes: int) -> np.ndarray:
    """Recogniser-like outputs [rows,steps,classes]: many blanks, a repeated
    character (steps 10-13 of every row), one all-blank row (row 3)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(rows, steps, classes)).astype(np.float32)
    logits[:, :, 0] += rng.uniform(0, 6, size=(rows, steps)).astype(np.float32)
    logits[:, 10:14, 5] += 20
    logits[3] = 0
    logits[3, :, 0] = 10
    return np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)


def synthetic_map(seed: int, shape=(320, 480)) -> np.ndarray:
    """A detector-like probability map [1,1,h,w]: blurred ellipses of several
    sizes, heights and angles on a little noise."""
    rng = np.random.default_rng(seed)
    canvas = np.zeros(shape, np.float32)
    for _ in range(12):
        center = (int(rng.integers(0, shape[1])), int(rng.integers(0, shape[0])))
        axes = (int(rng.integers(2, 80)), int(rng.integers(1, 14)))
        cv2.ellipse(canvas, center, axes, float(rng.uniform(-20, 20)), 0, 360, float(rng.uniform(0.35, 1.0)), -1)
    canvas = cv2.GaussianBlur(canvas, (5, 5), 1.5) + rng.uniform(0, 0.05, size=shape).astype(np.float32)
    return np.clip(canvas, 0, 1)[None, None]


def content_keyed_network(outputs: int):
    """A stand-in network whose output for an item depends on that item's
    pixels only: the groups, the order and the scatter back must then agree
    exactly with the library's, whatever the batch composition."""

    def run(batch: np.ndarray) -> np.ndarray:
        if outputs == 2:
            m = batch.reshape(len(batch), -1).mean(axis=1)
            p180 = (np.abs(m) * 1e4) % 1.0
            return np.stack([1 - p180, p180], axis=1).astype(np.float32)
        steps = batch.shape[3] // 8
        cols = batch.mean(axis=(1, 2))[:, : steps * 8].reshape(len(batch), steps, 8).mean(axis=2)
        idx = (np.abs(cols * 1000).astype(np.int64) % (outputs - 1)) * (np.abs(cols) > 0.01)
        preds = np.full((len(batch), steps, outputs), 0.01 / outputs, np.float32)
        peak = 0.5 + 0.4 * np.abs(np.sin(cols + steps))  # depends on the padded width too
        np.put_along_axis(preds, idx[..., None], peak[..., None].astype(np.float32), axis=2)
        return preds

    return run


def grouping_crops(seed: int) -> list[np.ndarray]:
    """Crops with many equal aspect ratios in shuffled order, straddling group
    boundaries: which tied crop lands in which group (hence its padded width)
    is decided by np.argsort's default (unstable) sort, as in the libraries."""
    rng = np.random.default_rng(seed)
    sizes = [(32, int(w)) for w in rng.integers(20, 700, size=17)] + [(20, 160)] * 28 + [(20, 240)] * 3 + [(40, 40)] * 5
    sizes = [sizes[i] for i in rng.permutation(len(sizes))]
    return [rng.integers(0, 256, size=(*s, 3), dtype=np.uint8) for s in sizes]


# ---------------------------------------------------------------- matching network calls with a library's


def input_key(batch: np.ndarray) -> tuple:
    """A network input's identity: its shape and a digest of its float32 bytes."""
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    return batch.shape, hashlib.blake2b(batch.tobytes(), digest_size=16).digest()


def reduced(name: str, output: np.ndarray):
    """What the composition keeps of a network's output: the recogniser's
    per-step argmax / max (ctc_steps), the others whole."""
    return ctc_steps(output) if name == "rec" else output


def same_output(a, b) -> bool:
    pairs = zip(a, b) if isinstance(a, tuple) else [(a, b)]
    return all(np.array_equal(x, y) for x, y in pairs)


class RecordingSession:
    """A library stage's session, unchanged for the library, that keeps each
    output (reduced) by its input in `outputs`; other attributes are the
    session's own. `listed`: the session answers the list of the network's
    outputs (rapidocr-onnxruntime 1.4.4), not the first one (rapidocr 3.x)."""

    def __init__(self, wrapped, name: str, outputs: dict, listed: bool):
        self.wrapped, self.name, self.outputs, self.listed = wrapped, name, outputs, listed

    def __call__(self, batch):
        output = self.wrapped(batch)
        self.outputs[input_key(batch)] = reduced(self.name, np.asarray(output[0] if self.listed else output))
        return output

    def __getattr__(self, attribute):
        return getattr(self.wrapped, attribute)


class LibraryRecord:
    """The calls a library makes to its three networks: `stages` maps "det",
    "cls", "rec" to (the stage object, the attribute holding its session),
    which is wrapped in place (`listed`: see RecordingSession). `clear()`
    between pictures bounds the memory."""

    def __init__(self, stages: dict[str, tuple[object, str]], listed: bool = False):
        self.outputs: dict[str, dict] = {name: {} for name in stages}
        for name, (stage, attribute) in stages.items():
            setattr(stage, attribute, RecordingSession(getattr(stage, attribute), name, self.outputs[name], listed))

    def clear(self) -> None:
        for outputs in self.outputs.values():
            outputs.clear()


class CheckedOCR(OfflineOCR):
    """OfflineOCR whose every network call is matched, bit for bit, with the
    calls the library made on the same picture (read it with the library
    first): `counts[network]` has the calls, the inputs identical to one the
    library fed that network ("same input"), the calls run here ("ran") and
    their outputs identical to the library's for that input ("same output").

    With `replay` (for the library's own network files), an input the library
    ran takes the library's output instead of running the same file again in
    the same onnxruntime: the first such input of each network is run here
    too, and replaying goes on only while every output run here matched.
    Any other input runs here, so a difference in the composition still
    shows in the answers."""

    def __init__(self, record: LibraryRecord, models_dir=None, replay: bool = False, **options):
        super().__init__(models_dir, **options)
        self.record, self.replay = record, replay
        self.counts = {name: Counter() for name in ("det", "cls", "rec")}
        self.networks = dataclasses.replace(self.networks, **{name: self._checked(name) for name in self.counts})

    def _checked(self, name: str):
        counts = self.counts[name]

        async def network(batch):
            recorded = self.record.outputs[name].get(input_key(batch))
            counts["calls"] += 1
            counts["same input"] += recorded is not None
            checked = counts["ran"] - counts["ran on a new input"]
            if recorded is not None and self.replay and checked > 0 and counts["same output"] == checked:
                counts["replayed"] += 1
                return recorded
            counts["ran"] += 1
            output = reduced(name, self.run(name, batch))
            if recorded is None:
                counts["ran on a new input"] += 1
            else:
                counts["same output"] += same_output(output, recorded)
            return output

        return network

    def summary(self) -> str:
        return ", ".join(
            f"{name} {c['same input']}/{c['calls']} inputs identical, {c['same output']}/{c['ran'] - c['ran on a new input']} outputs"
            + (f", {c['replayed']} replayed" if self.replay else "")
            for name, c in self.counts.items()
        )


def check_cls_and_rec_inputs(engine, params) -> None:
    """Our classifier and recogniser inputs equal the library engine's on crops of assorted shapes."""
    rng = np.random.default_rng(4)
    crops = [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in [(30, 200), (48, 48), (20, 400), (60, 30), (32, 900)]]
    for c in crops:
        np.testing.assert_array_equal(cls_input(c, params), engine.text_cls.resize_norm_img(c))
    ratios = [c.shape[1] / c.shape[0] for c in crops]
    max_ratio = max(320 / 48, *ratios)
    batch = rec_input(crops, range(len(crops)), params)
    assert batch.shape == (5, 3, 48, int(48 * max_ratio)) == (5, 3, 48, rec_width(ratios, params))
    for row, c in zip(batch, crops):
        np.testing.assert_array_equal(row, engine.text_rec.resize_norm_img(c, max_ratio))
    assert rec_width([1.0, 2.0], params) == 320  # never narrower than 320
