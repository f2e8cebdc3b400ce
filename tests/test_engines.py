"""Two CPU engines for the ONNX networks: the Python-based `openvino` backend
beside `onnxruntime`, the engine configs derived from config.pbtxt, and the
other engine one switch away (`--model-config-name`). Tolerance between the
engines: 1e-4 absolute on the networks' outputs (measured: 1e-7..5e-6)."""

from __future__ import annotations

import shutil

import fake_pb_utils as pb
import numpy as np
import pytest
import tritonclient.http as httpclient
from inprocess import InProcessServer, error_of, outputs_of
from triton_helpers import make_inputs

from clients.common import picture_request
from lint import pbtxt
from lint.engine_configs import PRECISION_VARIANTS, ENGINES, engine_config, engine_of, expected_configs
from lint.checks import lint_repository
from runtime.paths import MODEL_REPOSITORY
from runtime.server import TritonServer
from testsets.images import photo_samples

ENGINE_TOLERANCE = 1e-4
NETWORKS = sorted(p.parent.name for p in MODEL_REPOSITORY.glob("*/config.pbtxt") if engine_of(pbtxt.parse(p.read_text())))


def test_every_network_has_the_other_engine_one_switch_away():
    assert {"ocr_det", "ocr_rec", "ocr_cls", "orientation_classifier", "vit_model", "text_encoder"} <= set(NETWORKS)
    for network in NETWORKS:
        expected = expected_configs(MODEL_REPOSITORY / network)
        assert len(expected) == 1 + len(PRECISION_VARIANTS.get(network, ())), network
        for path, text in expected.items():
            assert path.exists() and path.read_text() == text, f"{path}: run python -m lint.engine_configs"


@pytest.mark.parametrize("network", NETWORKS)
def test_engine_configs_round_trip(network):
    text = (MODEL_REPOSITORY / network / "config.pbtxt").read_text()
    source = pbtxt.parse(text)
    for engine in ENGINES:
        other = pbtxt.parse(engine_config(text, engine))
        assert other.backend == engine and [t.name for t in other.input] == [t.name for t in source.input]
        assert other.max_batch_size == source.max_batch_size and other.dynamic_batching == source.dynamic_batching
        back = pbtxt.parse(engine_config(engine_config(text, engine), engine_of(source)))
        assert back.backend == engine_of(source) and back.input == source.input and back.output == source.output


def _random_batch(config, batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    fixed = {-1: 64}
    return {t["name"]: rng.random((batch, *[fixed.get(int(d), int(d)) for d in t["dims"]]), dtype=np.float32) for t in config["input"]}


@pytest.fixture(scope="module")
def both_engines(tmp_path_factory):
    """The OCR networks and the orientation classifier on each engine, in-process."""
    previous = getattr(pb, "SERVER", None)  # BLS calls of other tests go to the session's in-process server
    servers = {}
    for engine in ENGINES:
        root = tmp_path_factory.mktemp(engine)
        for network in ("ocr_cls", "ocr_rec", "orientation_classifier"):
            shutil.copytree(MODEL_REPOSITORY / network, root / network, symlinks=True, ignore=shutil.ignore_patterns("configs"))
            config = root / network / "config.pbtxt"
            if engine_of(pbtxt.parse(config.read_text())) != engine:
                config.write_text(engine_config(config.read_text(), engine))
        servers[engine] = InProcessServer([root])
    pb.SERVER = previous
    return servers


@pytest.mark.parametrize("network", ["ocr_cls", "ocr_rec", "orientation_classifier"])
def test_both_engines_give_the_same_outputs(both_engines, network):
    config = both_engines["openvino"].config(network)
    sent = [_random_batch(config, 2, 0), _random_batch(config, 1, 1)]
    answers = {engine: both_engines[engine].infer_batch(network, sent) for engine in ENGINES}
    for ours, theirs in zip(answers["openvino"], answers["onnxruntime"]):
        for name, want in outputs_of(theirs).items():
            got = outputs_of(ours)[name]
            assert got.dtype == want.dtype and got.shape == want.shape, name
            np.testing.assert_allclose(got, want, atol=ENGINE_TOLERANCE, err_msg=f"{network}:{name}")


@pytest.mark.parametrize("engine", ENGINES)
def test_recogniser_ctc_outputs_are_the_softmax_reduced(both_engines, engine):
    """ocr_rec's in-graph ctc_indices / ctc_scores (what the OCR models ask
    for) equal argmax / max of its softmax, exactly, and a request naming
    outputs gets those alone (the softmax is not copied out)."""
    config = both_engines[engine].config("ocr_rec")
    batch = _random_batch(config, 3, 4)
    full = outputs_of(both_engines[engine].infer("ocr_rec", batch))
    reduced = outputs_of(both_engines[engine].infer("ocr_rec", batch, ["ctc_indices", "ctc_scores"]))
    assert set(reduced) == {"ctc_indices", "ctc_scores"}
    softmax = full["softmax_11.tmp_0"]
    np.testing.assert_array_equal(reduced["ctc_indices"], softmax.argmax(axis=2))
    np.testing.assert_array_equal(reduced["ctc_scores"], softmax.max(axis=2))
    assert reduced["ctc_indices"].dtype == np.int64


def test_openvino_backend_honours_the_native_parameters(both_engines):
    engine = both_engines["openvino"].instance("ocr_rec").batch_model.process.engine
    threads = both_engines["openvino"].config("ocr_rec")["parameters"]["INFERENCE_NUM_THREADS"]["string_value"]
    assert engine.compiled.get_property("INFERENCE_NUM_THREADS") == int(threads)
    assert str(engine.compiled.get_property("PERFORMANCE_HINT")).endswith("LATENCY")
    assert engine.compiled.get_property("NUM_STREAMS") == 1
    assert "float32" in str(engine.compiled.get_property("INFERENCE_PRECISION_HINT"))
    # single-thread instances in several stubs must not be pinned onto one core
    assert engine.compiled.get_property("ENABLE_CPU_PINNING") is False


def test_onnxruntime_session_entries_are_applied(both_engines):
    session = both_engines["onnxruntime"].instance("ocr_rec").batch_model.process.engine.session
    assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_openvino_bad_request_fails_alone(both_engines):
    config = both_engines["openvino"].config("ocr_cls")
    good = _random_batch(config, 1, 2)
    responses = both_engines["openvino"].infer_batch("ocr_cls", [{"x": good["x"].astype(np.float64)}, good, {"x": good["x"][:, :, :10]}])
    assert "x" in error_of(responses[0]) and "FP32" in error_of(responses[0])
    assert "x" in error_of(responses[2])
    assert outputs_of(responses[1])["save_infer_model/scale_0.tmp_1"].shape == (1, 2)


# ---------------------------------------------------------------- lint


@pytest.fixture
def openvino_repo(tmp_path):
    # the orientation pipeline, whose network is served by openvino
    for model in ("image_decode", "orientation_preprocess", "orientation_classifier", "orientation"):
        shutil.copytree(MODEL_REPOSITORY / model, tmp_path / model, symlinks=True)
    return tmp_path


def _edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_lint_openvino_rules(openvino_repo):
    assert [str(f) for f in lint_repository(openvino_repo)] == []
    config = openvino_repo / "orientation_classifier" / "config.pbtxt"
    _edit(config, '{ key: "ENABLE_BATCH_PADDING" value: { string_value: "YES" } }', '{ key: "ENABLE_BATCH_PADDING" value: { string_value: "NO" } }')
    _edit(config, "kind: KIND_CPU", "kind: KIND_GPU")
    found = {(f.field, f.path.split("/")[-1]) for f in lint_repository(openvino_repo)}
    assert ("parameters.ENABLE_BATCH_PADDING", "config.pbtxt") in found and ("instance_group", "config.pbtxt") in found
    # the engine config derived from the old config.pbtxt has drifted
    assert ("engine", "onnxruntime.pbtxt") in found


# ------------------------------------------- the switch, on a real server


def test_model_config_name_switches_the_engine(http_client, tmp_path):
    """orientation served with every network on ONNX Runtime
    (--model-config-name=onnxruntime) answers as the default server does."""
    for model in ("image_decode", "orientation_preprocess", "orientation_classifier", "orientation"):
        shutil.copytree(MODEL_REPOSITORY / model, tmp_path / model, symlinks=True)
    picture = photo_samples()[0].data
    inputs = picture_request(picture)
    default = http_client.infer("orientation", make_inputs(httpclient, inputs))
    with TritonServer(repositories=[tmp_path], extra_args=["--model-config-name=onnxruntime"]) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        assert client.get_model_config("orientation_classifier")["backend"] == "onnxruntime"
        switched = client.infer("orientation", make_inputs(httpclient, inputs))
    for output in default.get_response()["outputs"]:
        got, want = switched.as_numpy(output["name"]), default.as_numpy(output["name"])
        if want.dtype == np.object_:
            assert got.tolist() == want.tolist()
        else:
            np.testing.assert_allclose(got, want, atol=ENGINE_TOLERANCE)
