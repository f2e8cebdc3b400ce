"""`ocr` (ensemble) and `ocr_bls` against RapidOCR 1.4.4 called directly on the
same bytes, on the OCR test set and on text-dense document pages (one page of
each kind). Parity tolerance: >= 99% of lines with identical text, box
corners within 2 px, text scores within 1e-3; accuracy against the rendered
ground truth is reported for both."""

from __future__ import annotations

import difflib
import io

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from triton_helpers import grpc_fire_all, make_inputs

from clients.common import encoded_bytes_tensor
from testsets.documents import PAGE_KINDS
from testsets.documents import pages as document_pages
from testsets.ocr import OcrSample, encode, render_lines, samples, sixteen_bit_png

OUTPUTS = ("boxes", "box_scores", "texts", "text_scores")
BOX_TOLERANCE_PX = 2
SCORE_TOLERANCE = 1e-3
MIN_IDENTICAL = 0.99


@pytest.fixture(scope="module")
def testset():
    return samples()


@pytest.fixture(scope="module")
def documents():
    """One page of each kind (the perf suite runs all of them)."""
    return [OcrSample(page.name, page.data, []) for page in document_pages(len(PAGE_KINDS))]


@pytest.fixture(scope="module")
def rapidocr():
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR()


@pytest.fixture(scope="module")
def reference(testset, rapidocr):
    return [rapidocr(s.data)[0] or [] for s in testset]


def served_lines(result) -> list[tuple[np.ndarray, float, str, float]]:
    boxes, box_scores, texts, text_scores = (result.as_numpy(name) for name in OUTPUTS)
    return [(b, float(bs), t.decode("utf-8"), float(ts)) for b, bs, t, ts in zip(boxes, box_scores, texts, text_scores)]


def similarity(found: list[str], truth: list[str]) -> float:
    squeeze = lambda lines: "".join("".join(lines).split())  # noqa: E731
    return difflib.SequenceMatcher(None, squeeze(found), squeeze(truth)).ratio()


@pytest.mark.parametrize("model", ["ocr", "ocr_bls"])
def test_parity_with_rapidocr(grpc_client, testset, reference, model):
    assert_parity(grpc_client, model, testset, reference, min_lines=50)


@pytest.mark.parametrize("model", ["ocr", "ocr_bls"])
def test_parity_on_document_pages(grpc_client, documents, rapidocr, model):
    assert_parity(grpc_client, model, documents, [rapidocr(s.data)[0] or [] for s in documents], min_lines=60)


def assert_parity(grpc_client, model, testset, reference, min_lines):
    requests = [make_inputs(grpcclient, {"input_image": encoded_bytes_tensor(s.data)}) for s in testset]
    answers = grpc_fire_all(grpc_client, model, requests, timeout=600)
    total = identical = 0
    problems = []
    ours_accuracy, ref_accuracy = [], []
    for sample, expected, (result, error, _) in zip(testset, reference, answers):
        assert error is None, f"{sample.name}: {error}"
        got = served_lines(result)
        if len(got) != len(expected):
            problems.append(f"{sample.name}: {len(got)} lines, RapidOCR {len(expected)}")
        for (box, box_score, text, score), (ref_box, ref_text, ref_score) in zip(got, expected):
            total += 1
            corner_gap = float(np.abs(box - np.array(ref_box, dtype=np.float32)).max())
            if text == ref_text and corner_gap <= BOX_TOLERANCE_PX and abs(score - float(ref_score)) <= SCORE_TOLERANCE:
                identical += 1
            else:
                problems.append(f"{sample.name}: {text!r}/{ref_text!r} box {corner_gap:.1f}px score {score:.4f}/{float(ref_score):.4f}")
            assert 0.5 <= box_score <= 1.0
        if sample.lines:
            ours_accuracy.append(similarity([line[2] for line in got], sample.lines))
            ref_accuracy.append(similarity([line[1] for line in expected], sample.lines))
    share = identical / max(total, 1)
    accuracy = f"; character similarity to ground truth: {model} {np.mean(ours_accuracy):.3f}, RapidOCR {np.mean(ref_accuracy):.3f}" if ours_accuracy else ""
    print(f"\n{model} vs RapidOCR on {len(testset)} pictures: {identical}/{total} lines identical ({share:.1%}){accuracy}")
    for problem in problems:
        print("  ", problem)
    assert total > min_lines
    assert share >= MIN_IDENTICAL and not any("lines, RapidOCR" in p for p in problems), problems


def test_http_and_reading_order(http_client):
    picture = encode(render_lines(["first line here", "second line below"], size=32))
    result = http_client.infer("ocr", make_inputs(httpclient, {"input_image": encoded_bytes_tensor(picture)}))
    texts = [t.decode() for t in result.as_numpy("texts")]
    # reading order: the words of the first line, then those of the second
    assert "".join(texts).replace(" ", "") == "firstlineheresecondlinebelow", texts
    boxes = result.as_numpy("boxes")
    assert boxes.shape == (len(texts), 4, 2) and boxes[0, 0, 1] < boxes[-1, 0, 1]


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name,data",
    [
        ("1x1", _png(np.zeros((1, 1, 3), np.uint8))),
        ("blank", _png(np.full((200, 300, 3), 255, np.uint8))),
    ],
)
def test_no_text_is_an_empty_answer(http_client, name, data):
    result = http_client.infer("ocr", make_inputs(httpclient, {"input_image": encoded_bytes_tensor(data)}))
    assert result.as_numpy("boxes").shape == (0, 4, 2)
    assert result.as_numpy("texts").shape == (0,)


def test_grayscale_rgba_and_16_bit(http_client, reference, testset):
    by_name = {s.name: (s, ref) for s, ref in zip(testset, reference)}
    for name in ("grayscale", "rgba"):
        sample, expected = by_name[name]
        result = http_client.infer("ocr_bls", make_inputs(httpclient, {"input_image": encoded_bytes_tensor(sample.data)}))
        assert [t.decode() for t in result.as_numpy("texts")] == [text for _, text, _ in expected]
    # 16-bit grey: RapidOCR feeds 0..65535 to a 0..255 normalisation; we use the high byte (documented deviation)
    result = http_client.infer("ocr", make_inputs(httpclient, {"input_image": encoded_bytes_tensor(sixteen_bit_png())}))
    assert "".join(t.decode() for t in result.as_numpy("texts")).replace(" ", "") == "sixteenbit"


def test_client_prints_seed_json_and_draws(triton, tmp_path, capsys):
    import json

    from clients.ocr_client import main

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(encode(render_lines(["client test"], size=32)))
    (tmp_path / "in" / "b.jpg").write_bytes(b"broken")
    code = main([str(tmp_path / "in"), "--url", triton.grpc_url, "--protocol", "grpc", "--concurrency", "2", "--draw", str(tmp_path / "out")])
    printed = json.loads(capsys.readouterr().out)
    assert code == 1  # one file failed
    by_name = {entry["filename"].rsplit("/", 1)[-1]: entry for entry in printed}
    line = by_name["a.png"]["result"][0]
    assert set(line) == {"box", "box_score", "text", "text_score"} and len(line["box"]) == 8
    assert line["text"] == "client test"
    assert "error" in by_name["b.jpg"]
    assert (tmp_path / "out" / "a_ocr.png").exists()
