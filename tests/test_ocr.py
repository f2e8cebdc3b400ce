"""`ocr` (ensemble) and `ocr_bls` against the library that ships the served
model set, called directly on the same bytes.

- PP-OCRv6 (the default set) against rapidocr 3.10's `RapidOCR()` on its
  default onnxruntime engine, on the OCR test set, one document page of each
  kind and the multilingual set: every line's text identical, the same lines
  per picture, box corners within 1 px, text scores within 1e-4.
- PP-OCRv4 (a second server, OCR models only, --model-config-name=ppocrv4)
  against rapidocr-onnxruntime 1.4.4 on the OCR test set, with that set's
  tolerance (>= 99% of lines identical, corners within 2 px, scores within 1e-3).
Character error rate and exact line match against the recorded ground truth
are printed for the served set and its library."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from triton_helpers import grpc_fire_all, make_inputs

from clients.common import encoded_bytes_tensor
from clients.ocr_client import OcrClient, main as ocr_client_main
from references.ocr import LibraryOCR
from runtime.paths import MODEL_REPOSITORY
from runtime.server import TritonServer
from testsets.documents import PAGE_KINDS
from testsets.documents import pages as document_pages
from testsets.ocr import encode, render_lines, samples, sixteen_bit_png

OUTPUTS = ("boxes", "box_scores", "texts", "text_scores")
OCR_MODELS = ("image_decode", "ocr", "ocr_bls", "ocr_det_pre", "ocr_det", "ocr_recognize", "ocr_cls", "ocr_rec")


@dataclass(frozen=True)
class Tolerance:
    box_px: float
    score: float
    min_identical: float


V6 = Tolerance(box_px=1.0, score=1e-4, min_identical=1.0)
V4 = Tolerance(box_px=2.0, score=1e-3, min_identical=0.99)


@dataclass
class Picture:
    name: str
    data: bytes


@pytest.fixture(scope="module")
def testset():
    return [Picture(s.name, s.data) for s in samples()]


@pytest.fixture(scope="module")
def documents():
    """One page of each kind (the perf suite runs all of them)."""
    return [Picture(page.name, page.data) for page in document_pages(len(PAGE_KINDS))]


@pytest.fixture(scope="module")
def multilingual():
    multilingual = pytest.importorskip("testsets.multilingual", reason="the multilingual set is not in this checkout yet")
    return [Picture(page.name, page.data) for page in multilingual.pages()]


@pytest.fixture(scope="module")
def rapidocr():
    return LibraryOCR("PP-OCRv6")


def served_lines(result) -> list[tuple[np.ndarray, float, str, float]]:
    boxes, box_scores, texts, text_scores = (result.as_numpy(name) for name in OUTPUTS)
    return [(b, float(bs), t.decode("utf-8"), float(ts)) for b, bs, t, ts in zip(boxes, box_scores, texts, text_scores)]


def assert_parity(grpc_client, model: str, pictures: list[Picture], library: LibraryOCR, tolerance: Tolerance, min_lines: int) -> None:
    requests = [make_inputs(grpcclient, {"input_image": encoded_bytes_tensor(p.data)}) for p in pictures]
    answers = grpc_fire_all(grpc_client, model, requests, timeout=900)
    total = identical = 0
    problems, largest_gap, largest_score_gap = [], 0.0, 0.0
    for picture, (result, error, _) in zip(pictures, answers):
        assert error is None, f"{picture.name}: {error}"
        got, expected = served_lines(result), library(picture.data)
        if len(got) != len(expected):
            problems.append(f"{picture.name}: {len(got)} lines, the library {len(expected)}")
        for (box, box_score, text, score), (ref_box, _, ref_text, ref_score) in zip(got, expected):
            total += 1
            gap, score_gap = float(np.abs(box - ref_box).max()), abs(score - ref_score)
            largest_gap, largest_score_gap = max(largest_gap, gap), max(largest_score_gap, score_gap)
            if text == ref_text and gap <= tolerance.box_px and score_gap <= tolerance.score:
                identical += 1
            else:
                problems.append(f"{picture.name}: {text!r}/{ref_text!r} box {gap:.2f}px score {score:.5f}/{ref_score:.5f}")
            assert 0.5 <= box_score <= 1.0
    share = identical / max(total, 1)
    print(f"\n{model} vs {library.model_set.library} on {len(pictures)} pictures: {identical}/{total} lines identical ({share:.1%}), "
          f"largest corner gap {largest_gap:.2f} px, largest score gap {largest_score_gap:.1e}")
    for problem in problems:
        print("  ", problem)
    assert total > min_lines
    assert share >= tolerance.min_identical and not any("lines, the library" in p for p in problems), problems


@pytest.mark.parametrize("model", ["ocr", "ocr_bls"])
def test_parity_with_rapidocr_on_the_test_set(grpc_client, testset, rapidocr, model):
    assert_parity(grpc_client, model, testset, rapidocr, V6, min_lines=50)


@pytest.mark.parametrize("model", ["ocr", "ocr_bls"])
def test_parity_on_document_pages(grpc_client, documents, rapidocr, model):
    assert_parity(grpc_client, model, documents, rapidocr, V6, min_lines=60)


@pytest.mark.parametrize("model", ["ocr", "ocr_bls"])
def test_parity_on_the_multilingual_set(grpc_client, multilingual, rapidocr, model):
    assert_parity(grpc_client, model, multilingual, rapidocr, V6, min_lines=20)


@pytest.fixture(scope="module")
def ppocrv4_server(tmp_path_factory):
    """The OCR models alone, served as the PP-OCRv4 set."""
    repository = tmp_path_factory.mktemp("ppocrv4")
    for model in OCR_MODELS:
        shutil.copytree(MODEL_REPOSITORY / model, repository / model, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    server = TritonServer(repositories=[repository], extra_args=["--model-config-name=ppocrv4"])
    server.start(timeout=600)
    yield server
    server.stop()


@pytest.mark.parametrize("model", ["ocr", "ocr_bls"])
def test_ppocrv4_is_one_switch_away(ppocrv4_server, testset, model):
    client = grpcclient.InferenceServerClient(ppocrv4_server.grpc_url)
    try:
        assert OcrClient(ppocrv4_server.grpc_url, "grpc").model_set() == "PP-OCRv4"
        assert_parity(client, model, testset, LibraryOCR("PP-OCRv4"), V4, min_lines=50)
    finally:
        client.close()


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


def test_grayscale_rgba_and_16_bit(http_client, testset, rapidocr):
    by_name = {p.name: p for p in testset}
    for name in ("grayscale", "rgba"):
        result = http_client.infer("ocr_bls", make_inputs(httpclient, {"input_image": encoded_bytes_tensor(by_name[name].data)}))
        assert [t.decode() for t in result.as_numpy("texts")] == rapidocr(by_name[name].data).texts
    # 16-bit grey: RapidOCR feeds 0..65535 to a 0..255 normalisation; we use the high byte (documented deviation)
    result = http_client.infer("ocr", make_inputs(httpclient, {"input_image": encoded_bytes_tensor(sixteen_bit_png())}))
    assert "".join(t.decode() for t in result.as_numpy("texts")).replace(" ", "") == "sixteenbit"


def test_light_text_on_transparency_follows_rapidocr_3(http_client, rapidocr):
    """rapidocr 3.x blends RGBA over black when the visible pixels are light
    (1.4.4 inverted them): white text on a transparent page stays readable."""
    page = render_lines(["light text on glass"], size=30, fg=(250, 250, 250, 255), bg=(0, 0, 0, 0), mode="RGBA")
    data = encode(page)
    result = http_client.infer("ocr", make_inputs(httpclient, {"input_image": encoded_bytes_tensor(data)}))
    texts = [t.decode() for t in result.as_numpy("texts")]
    assert texts == rapidocr(data).texts and " ".join(texts) == "light text on glass"


def test_client_prints_seed_json_the_model_set_and_draws(triton, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(encode(render_lines(["client test"], size=32)))
    (tmp_path / "in" / "b.jpg").write_bytes(b"broken")
    code = ocr_client_main([str(tmp_path / "in"), "--url", triton.grpc_url, "--protocol", "grpc", "--concurrency", "2", "--draw", str(tmp_path / "out")])
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert code == 1  # one file failed
    assert "model set: PP-OCRv6" in captured.err
    by_name = {entry["filename"].rsplit("/", 1)[-1]: entry for entry in printed}
    line = by_name["a.png"]["result"][0]
    assert set(line) == {"box", "box_score", "text", "text_score"} and len(line["box"]) == 8
    assert line["text"] == "client test"
    assert "error" in by_name["b.jpg"]
    assert (tmp_path / "out" / "a_ocr.png").exists()


def test_model_set_over_http(triton):
    assert OcrClient(triton.http_url, "http").model_set() == "PP-OCRv6"
