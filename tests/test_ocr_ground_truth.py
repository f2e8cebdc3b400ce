"""The OCR test sets' ground truth (testsets/ground_truth.py: every drawn line,
its text and its box), the multilingual set (testsets/multilingual.py) and
the accuracy metric (testsets/accuracy.py): pure and fast, but for one short
run of RapidOCR 3.10 (PP-OCRv6) scored end to end."""

from __future__ import annotations

import hashlib
import io
import math
import unicodedata
from importlib import resources

import numpy as np
import pytest
import shapely
from PIL import Image, ImageDraw
from rapidfuzz.distance import Levenshtein

from testsets import documents, multilingual, ocr
from testsets.accuracy import PageScore, normalised, score_page, total
from testsets.ground_truth import GroundTruthLine, rectangle

# sha256 of the concatenated bytes, taken before the generators recorded ground truth:
# the pages stay the pictures earlier measurements were made on.
DOCUMENT_PAGES_SHA256 = "44b0f919f4446f32a46cab994c55d0e7f998fd370a9582557a8cb2c8cbfbb7d0"
OCR_SAMPLES_SHA256 = "2118382fa079d571c05e06e213edf339cf374ea17f11bfbd2680db8b57668f14"  # samples(include_photo=False)
FORMAT_SAMPLES_SHA256 = "e80b2597dc932e1e391d8ef7b95e0e81c88749bab0a7b974014d1cafd78b17a9"

# Grey levels (0-255) away from the paper around a line: its ink is further than INK inside the
# box; nothing is further than STRAY just outside it (the grey field outlines of the forms, 120
# on paper of about 245, may come close to a line; ink may not).
INK = 120
STRAY = 140
EDGE_INK = 30  # anti-aliased ink reaches every side of an upright box (faintly where a stroke is thin)


def _sha256(parts: list[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def document_pages():
    return documents.pages()


@pytest.fixture(scope="module")
def multilingual_pages():
    reason = multilingual.cjk_fonts_missing()
    if reason:
        pytest.skip(reason)
    return multilingual.pages()


@pytest.fixture(scope="module")
def ocr_samples():
    return ocr.samples(include_photo=False) + ocr.format_samples()


def test_document_pages_are_the_pictures_measured_before(document_pages):
    assert _sha256([page.data for page in document_pages]) == DOCUMENT_PAGES_SHA256
    again = documents.pages(4)
    assert [(page.data, page.lines) for page in again] == [(page.data, page.lines) for page in document_pages[:4]]


def test_ocr_samples_are_the_pictures_measured_before(ocr_samples):
    assert _sha256([sample.data for sample in ocr.samples(include_photo=False)]) == OCR_SAMPLES_SHA256
    assert _sha256([sample.data for sample in ocr.format_samples()]) == FORMAT_SAMPLES_SHA256
    for sample in ocr_samples:
        assert [line.text for line in sample.truth] == sample.lines, sample.name


def test_multilingual_pages_are_deterministic(multilingual_pages):
    assert 8 <= len(multilingual_pages) <= 12
    assert all(600 <= side <= 1300 for page in multilingual_pages for side in page.size)
    again = multilingual.pages(2)  # drawn anew: another count is another cache entry
    assert [(page.data, page.lines) for page in again] == [(page.data, page.lines) for page in multilingual_pages[:2]]


def test_every_recorded_line_has_text_and_a_box_inside_its_picture(document_pages, multilingual_pages, ocr_samples):
    pictures = [(page.name, page.data, page.lines) for page in document_pages + multilingual_pages]
    pictures += [(sample.name, sample.data, sample.truth) for sample in ocr_samples]
    for name, data, lines in pictures:
        width, height = Image.open(io.BytesIO(data)).size
        for line in lines:
            assert line.text and line.text == line.text.strip(), (name, line.text)
            assert line.box.shape == (4, 2) and line.box.dtype == np.float32
            assert (line.box >= 0).all() and (line.box[:, 0] <= width).all() and (line.box[:, 1] <= height).all(), (name, line)
    assert sum(len(page.lines) for page in document_pages) > 500


def _grey(data: bytes) -> np.ndarray:
    """The picture as grey levels, transparency over white and 16-bit scaled down."""
    image = Image.open(io.BytesIO(data))
    if image.mode.startswith("I"):
        return np.asarray(image, dtype=np.float32) / 257
    if "A" in image.getbands():
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    return np.asarray(image.convert("L"), dtype=np.float32)


def _mask(size: tuple[int, int], polygon: shapely.Polygon, origin: tuple[int, int]) -> np.ndarray:
    mask = Image.new("1", size, 0)
    ImageDraw.Draw(mask).polygon([(x - origin[0], y - origin[1]) for x, y in polygon.exterior.coords], fill=1)
    return np.asarray(mask)


def _misfits(grey: np.ndarray, line: GroundTruthLine, others: list[shapely.Polygon]) -> list[str]:
    """How the box fails to fit the ink of its line (`others`: the other lines' boxes, grown): none, when it does."""
    box = shapely.Polygon(line.box)
    outer = box.buffer(4, join_style="mitre")
    left, top, right, bottom = outer.bounds
    x0, y0 = max(int(left), 0), max(int(top), 0)
    x1, y1 = min(math.ceil(right) + 1, grey.shape[1]), min(math.ceil(bottom) + 1, grey.shape[0])
    window, size = grey[y0:y1, x0:x1], (x1 - x0, y1 - y0)
    ring = _mask(size, outer, (x0, y0)) & ~_mask(size, box.buffer(1.5, join_style="mitre"), (x0, y0))
    for other in others:  # a neighbouring cell may come closer than the ring is wide
        if other.intersects(outer):
            ring &= ~_mask(size, other, (x0, y0))
    away = np.abs(window - np.median(window[ring]))
    inside = _mask(size, box, (x0, y0))
    problems = []
    if away[inside].max() <= INK:
        problems.append("no ink inside")
    if away[ring].max() > STRAY:
        problems.append("ink just outside")
    if len(set(line.box[:, 0])) == 2 and len(set(line.box[:, 1])) == 2:  # axis-aligned: ink reaches every side
        (bx0, by0), (bx1, by1) = line.box.min(axis=0).astype(int) - (x0, y0), line.box.max(axis=0).astype(int) - (x0, y0)
        core = away[by0:by1, bx0:bx1]
        sides = {"top": core[:2], "bottom": core[-2:], "left": core[:, :2], "right": core[:, -2:]}
        problems += [f"no ink along the {side}" for side, band in sides.items() if band.max() <= EDGE_INK]
    return problems


@pytest.mark.parametrize("which", ["documents", "multilingual", "ocr"])
def test_boxes_fit_the_drawn_ink(which, document_pages, multilingual_pages, ocr_samples):
    if which == "ocr":
        pictures = [(sample.name, sample.data, sample.truth) for sample in ocr_samples]
    else:
        pictures = [(page.name, page.data, page.lines) for page in (document_pages if which == "documents" else multilingual_pages)]
    failures = []
    for name, data, lines in pictures:
        grey = _grey(data)
        grown = [shapely.Polygon(line.box).buffer(1.5, join_style="mitre") for line in lines]
        for index, line in enumerate(lines):
            problems = _misfits(grey, line, grown[:index] + grown[index + 1 :])
            if problems:
                failures.append((name, line.text, problems))
    assert not failures, failures[:10]


def test_turned_boxes_turn_with_the_text(ocr_samples):
    by_name = {sample.name: sample for sample in ocr_samples}

    def reading_angle(name: str, index: int = 0) -> float:
        box = by_name[name].truth[index].box
        return math.degrees(math.atan2(-(box[1, 1] - box[0, 1]), box[1, 0] - box[0, 0])) % 360  # y up, counter-clockwise

    assert reading_angle("page_0") == 0
    assert reading_angle("upside_down_0") == 180  # first corner: the picture's bottom right
    assert reading_angle("vertical") == 270  # turned clockwise: reads downwards
    assert reading_angle("skewed_0") == pytest.approx(3, abs=1e-3) and reading_angle("skewed_1") == pytest.approx(356, abs=1e-3)
    assert reading_angle("mixed_orientation", 1) == 180 and reading_angle("mixed_orientation", 2) == 0


def test_multilingual_pages_hold_each_language(multilingual_pages):
    texts = {code: "".join(line.text for page in multilingual_pages if page.name.startswith(code + "-") for line in page.lines) for code in ("de", "fr", "zh", "mixed")}
    assert set("äöüßÄÖÜ»«§…") <= set(texts["de"])
    assert set("éèêàçœâîôûë«»…") <= set(texts["fr"])
    wide = [char for char in texts["zh"] if unicodedata.east_asian_width(char) == "W"]
    assert len(set(wide)) > 150
    mixed_lines = [line.text for page in multilingual_pages if page.name.startswith("mixed-") for line in page.lines]
    both = [text for text in mixed_lines if any(unicodedata.east_asian_width(c) == "W" for c in text) and any(c.isascii() and c.isalpha() for c in text)]
    assert len(both) > 30
    assert {page.name.split("-")[1] for page in multilingual_pages} == set(multilingual.LAYOUTS)


def _v6_characters() -> set[str]:
    """The PP-OCRv6 recogniser's dictionary, from its ONNX metadata (the model rapidocr 3.10 carries)."""
    pytest.importorskip("rapidocr")
    onnxruntime = pytest.importorskip("onnxruntime")
    model = resources.files("rapidocr") / "models" / "PP-OCRv6_rec_small.onnx"
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return set(session.get_modelmeta().custom_metadata_map["character"].splitlines())


def test_every_multilingual_character_is_in_the_v6_dictionary(multilingual_pages):
    characters = _v6_characters()
    assert len(characters) == 18708
    drawn = {char for page in multilingual_pages for line in page.lines for char in line.text}
    assert drawn - characters == {" "}  # the recogniser adds the space to its dictionary


# The metric on hand-made pages: two lines, boxes 20 px high.
HELLO = GroundTruthLine("hello world", rectangle(10, 10, 110, 30))
PRICE = GroundTruthLine("Preis 12,50 €", rectangle(10, 50, 130, 70))
TRUTH = [HELLO, PRICE]


def _loose(box: np.ndarray, by: float = 6) -> np.ndarray:
    """A detector's box: larger than the ink all round."""
    return box + np.float32([[-by, -by], [by, -by], [by, by], [-by, by]])


def test_perfect_reading_scores_zero_errors():
    score = score_page(TRUTH, [("hello world", _loose(HELLO.box)), ("Preis 12,50 €", _loose(PRICE.box))])
    assert score == PageScore(truth_lines=2, truth_chars=24, predicted_lines=2, edits=0, exact_lines=2)
    assert score.cer == 0 and score.exact_match == 1


def test_one_substitution_costs_one_character():
    score = score_page(TRUTH, [("hellp world", HELLO.box), ("Preis 12,50 €", PRICE.box)])
    assert (score.edits, score.exact_lines) == (1, 1) and score.cer == pytest.approx(1 / 24) and score.exact_match == 0.5


def test_a_missed_line_costs_all_its_characters():
    score = score_page(TRUTH, [("hello world", HELLO.box)])
    assert (score.edits, score.missed_lines, score.exact_lines) == (13, 1, 1)


def test_a_split_line_is_joined_in_reading_order_with_a_space():
    pieces = [("world", rectangle(62, 8, 112, 32)), ("hello", rectangle(8, 8, 58, 32))]  # right piece first
    assert score_page([HELLO], pieces).exact_lines == 1
    turned = GroundTruthLine("hello world", HELLO.box[[2, 3, 0, 1]])  # upside down: reads right to left
    assert score_page([turned], pieces).edits == Levenshtein.distance("hello world", "world hello")


def test_an_extra_line_costs_all_its_characters():
    score = score_page(TRUTH, [("hello world", HELLO.box), ("Preis 12,50 €", PRICE.box), ("stamp", rectangle(300, 300, 360, 320))])
    assert (score.edits, score.extra_lines, score.exact_lines, score.predicted_lines) == (5, 1, 2, 3)


def test_a_box_barely_touching_a_line_is_an_insertion():
    grazing = rectangle(100, 25, 160, 45)  # a quarter of its area on HELLO
    score = score_page([HELLO], [("hello world", HELLO.box), ("x", grazing)])
    assert (score.extra_lines, score.edits) == (1, 1)


def test_empty_prediction():
    score = score_page(TRUTH, [])
    assert (score.edits, score.missed_lines, score.cer, score.exact_match) == (24, 2, 1.0, 0.0)
    assert score_page(TRUTH, [("  ", HELLO.box)]) == score  # a line without text is no line
    assert score_page([], []).cer == 0 and score_page([], [("x", HELLO.box)]).cer == 1


def test_normalisation_of_spaces_width_and_cjk():
    assert normalised("  Date 01.02.2020   Due ") == "Date 01.02.2020 Due"
    assert normalised("Freitag…") == "Freitag..."
    assert normalised("北京 Beijing  2020年3月21日，谢谢！") == "北京Beijing 2020年3月21日,谢谢!"
    line = GroundTruthLine("会议时间：3月 Berlin 办公室", rectangle(0, 0, 200, 20))
    assert score_page([line], [("会议时间:3月Berlin", rectangle(0, 0, 120, 20)), ("办公室", rectangle(130, 0, 200, 20))]).exact_lines == 1


def test_pages_add_up():
    first = score_page(TRUTH, [("hello world", HELLO.box)])
    second = score_page([HELLO], [("hello", HELLO.box)])
    summed = total([first, second])
    assert summed.truth_chars == 35 and summed.edits == 13 + 6 and summed.cer == pytest.approx(19 / 35)
    assert summed.exact_match == pytest.approx(1 / 3)


def test_rapidocr_scored_on_two_document_pages(document_pages):
    """End to end on the two pages with the least text (the recogniser's time goes with it):
    RapidOCR 3.10 (PP-OCRv6, onnxruntime) reads them well."""
    rapidocr = pytest.importorskip("rapidocr")
    engine = rapidocr.RapidOCR(params={"Global.log_level": "warning"})
    smallest = sorted(document_pages, key=lambda page: sum(len(line.text) for line in page.lines))[:2]
    scores = []
    for page in smallest:
        result = engine(page.data)
        scores.append(score_page(page.lines, list(zip(result.txts, result.boxes))))
    summed = total(scores)
    assert summed.truth_lines == sum(len(page.lines) for page in smallest)
    assert summed.cer < 0.05 and summed.exact_match > 0.85 and summed.missed_lines <= 1, summed.summary()
