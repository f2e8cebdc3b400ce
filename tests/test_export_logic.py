"""export/common without a GPU or a server: format priority, config edits
(lint/pbtxt.py), the TensorRT custom config (it must pass the linter), and
the fall-back from TensorRT to ONNX on a machine that cannot build plans."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import types
from pathlib import Path

import pytest
from triton_helpers import without_tensorrt
from tritonclient.grpc import model_config_pb2 as mc

from export.common import formats
from export.common.formats import (
    FormatUnavailable,
    Profile,
    parse_formats,
    place_network,
    tensorrt_missing,
)
from export.common.tensorrt_config import HEADER, tensorrt_config
from lint.checks import (
    check_basics,
    check_batching_convention,
    check_config,
    check_custom_interface,
    lint_repository,
    load_repository,
)
from runtime.paths import MODEL_REPOSITORY as REPO
from lint.pbtxt import edit_config, parse, set_instance_count, set_parameter, set_tensor_dims
ONNX_MODELS = sorted(p.parent.name for p in REPO.glob("*/config.pbtxt") if 'backend: "onnxruntime"' in p.read_text() or 'backend: "openvino"' in p.read_text())


# ------------------------------------------------------------ parse_formats


def test_parse_formats_keeps_order_and_drops_duplicates():
    assert parse_formats("tensorrt,onnx") == ["tensorrt", "onnx"]
    assert parse_formats("onnx,tensorrt") == ["onnx", "tensorrt"]
    assert parse_formats(" TensorRT , onnx ,tensorrt,onnx") == ["tensorrt", "onnx"]
    assert parse_formats("onnx,,") == ["onnx"]


@pytest.mark.parametrize("text", ["", ",", "openvino", "onnx,torchscript", "trt"])
def test_parse_formats_refuses_unknown_names(text):
    with pytest.raises(ValueError) as error:
        parse_formats(text)
    message = str(error.value)
    assert "tensorrt, onnx" in message and repr(text) in message


# ------------------------------------------------------- set_tensor_dims


CONFIG = """\
# a comment that must survive
name: "m"
backend: "onnxruntime"
max_batch_size: 8
input [
  { name: "pixel_values" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] }  # trailing comment
]
output [
  {
    name: "image_embeds"
    data_type: TYPE_FP32
    dims: [ 512 ]
  },
  { name: "pixel_values_copy" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] }
]
instance_group [ { name: "pixel_values" count: 1 kind: KIND_CPU } ]
"""


def test_set_tensor_dims_edits_only_the_named_tensor():
    updated = set_tensor_dims(CONFIG, "pixel_values", [3, 384, 384])
    assert updated == CONFIG.replace(
        '{ name: "pixel_values" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] }',
        '{ name: "pixel_values" data_type: TYPE_FP32 dims: [ 3, 384, 384 ] }',
    )
    config = parse(updated)
    assert list(config.input[0].dims) == [3, 384, 384]
    assert list(config.output[1].dims) == [3, 224, 224]  # a name that only starts the same is untouched
    assert "# a comment that must survive" in updated and "# trailing comment" in updated


def test_set_tensor_dims_multiline_block_and_unknown_tensor():
    updated = set_tensor_dims(CONFIG, "image_embeds", (768,))
    assert list(parse(updated).output[0].dims) == [768]
    assert updated.count("\n") == CONFIG.count("\n")
    with pytest.raises(ValueError, match="no tensor named 'missing'"):
        set_tensor_dims(CONFIG, "missing", [1])


def test_edit_config_writes_only_on_change(tmp_path):
    path = tmp_path / "config.pbtxt"
    path.write_text(CONFIG)
    said: list[str] = []
    assert edit_config(path, dims={"pixel_values": [3, 224, 224]}, log=said.append) is False
    assert path.read_text() == CONFIG and said == []
    assert edit_config(path, dims={"pixel_values": [3, 336, 336], "image_embeds": [768]}, log=said.append) is True
    config = parse(path.read_text())
    assert list(config.input[0].dims) == [3, 336, 336] and list(config.output[0].dims) == [768]
    assert len(said) == 1 and "pixel_values [ 3, 336, 336 ]" in said[0] and "image_embeds [ 768 ]" in said[0]
    with pytest.raises(ValueError, match="nothing"):
        edit_config(path, dims={"nothing": [1]}, log=said.append)


def test_instance_count_and_parameters_keep_comments():
    updated = set_parameter(set_instance_count(CONFIG, 3), "intra_op_thread_count", "1")
    config = parse(updated)
    assert config.instance_group[0].count == 3
    assert config.parameters["intra_op_thread_count"].string_value == "1"
    again = set_parameter(updated, "intra_op_thread_count", "2")
    assert parse(again).parameters["intra_op_thread_count"].string_value == "2" and again.count("intra_op_thread_count") == 1
    assert "# a comment that must survive" in again


def test_an_edit_never_leaves_an_invalid_config(tmp_path):
    path = tmp_path / "config.pbtxt"
    path.write_text(CONFIG)
    with pytest.raises(Exception):
        edit_config(path, parameters={'bad"key': "x"})
    assert path.read_text() == CONFIG


# -------------------------------------------------------- tensorrt_config


def test_tensorrt_config_fields():
    onnx_text = (REPO / "text_encoder" / "config.pbtxt").read_text()
    onnx_config = parse(onnx_text)
    text = tensorrt_config(onnx_text, max_batch=4)
    assert text.startswith(HEADER)
    config = parse(text)
    assert config.platform == "tensorrt_plan" and config.backend == ""
    assert config.default_model_filename == "model.plan"
    assert config.name == onnx_config.name
    assert config.max_batch_size == min(onnx_config.max_batch_size, 4)
    assert all(size <= config.max_batch_size for size in config.dynamic_batching.preferred_batch_size)
    assert config.dynamic_batching.default_queue_policy.max_queue_size == onnx_config.dynamic_batching.default_queue_policy.max_queue_size
    assert config.instance_group and all(g.kind == mc.ModelInstanceGroup.KIND_GPU and g.count == 1 for g in config.instance_group)
    assert "intra_op_thread_count" not in config.parameters and "inter_op_thread_count" not in config.parameters
    assert not config.HasField("optimization")
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [(t.name, t.data_type, list(t.dims)) for t in onnx_config.input]
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [(t.name, t.data_type, list(t.dims)) for t in onnx_config.output]


def test_tensorrt_config_keeps_a_smaller_max_batch_size():
    onnx_text = (REPO / "datatypes_onnx" / "config.pbtxt").read_text()
    assert parse(tensorrt_config(onnx_text, max_batch=64)).max_batch_size == parse(onnx_text).max_batch_size


def test_tensorrt_config_refuses_other_backends():
    with pytest.raises(ValueError, match="not an ONNX network"):
        tensorrt_config((REPO / "datatypes_model1" / "config.pbtxt").read_text(), max_batch=8)


@pytest.mark.parametrize("model", ONNX_MODELS)
def test_tensorrt_config_passes_the_linter(tmp_path, model):
    """Every ONNX model's TensorRT custom config, with its plan in place, is a
    clean drop-in replacement for its config.pbtxt."""
    folder = tmp_path / model
    (folder / "1").mkdir(parents=True)
    shutil.copy(REPO / model / "config.pbtxt", folder / "config.pbtxt")
    (folder / "1" / "model.plan").write_bytes(b"engine")
    (folder / "configs").mkdir()
    (folder / "configs" / "tensorrt.pbtxt").write_text(tensorrt_config((folder / "config.pbtxt").read_text(), max_batch=4))
    models, problems = load_repository(tmp_path)
    assert problems == []
    entry = models[model]
    custom = entry.custom["tensorrt"]
    # an internal model's callers (called_by) are the real repository's
    repository = {**load_repository(REPO)[0], **models}
    found = check_config(custom, repository) + check_custom_interface(custom, entry)
    assert [str(f) for f in found] == []
    # the same checks catch a custom config without its plan
    (folder / "1" / "model.plan").unlink()
    assert [f.message for f in check_basics(custom)] == ["1/model.plan is missing (run `make export`)"]
    assert check_batching_convention(custom, repository) == []


def test_tensorrt_config_of_a_real_onnx_model_lints_clean(tmp_path):
    shutil.copytree(REPO / "datatypes_onnx", tmp_path / "datatypes_onnx")
    folder = tmp_path / "datatypes_onnx"
    (folder / "1" / "model.plan").write_bytes(b"engine")
    (folder / "configs").mkdir(exist_ok=True)
    (folder / "configs" / "tensorrt.pbtxt").write_text(tensorrt_config((folder / "config.pbtxt").read_text(), max_batch=8))
    assert [str(f) for f in lint_repository(tmp_path)] == []


# ------------------------------------------------------- tensorrt_missing


@without_tensorrt
def test_tensorrt_missing_here():
    has_package = importlib.util.find_spec("tensorrt") is not None
    reason = tensorrt_missing()
    assert isinstance(reason, str) and reason
    assert ("tensorrt Python package is not installed" in reason) if not has_package else ("no NVIDIA GPU" in reason)


def test_tensorrt_missing_without_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    monkeypatch.setattr(formats, "gpu_names", lambda: [])
    assert tensorrt_missing() == "no NVIDIA GPU is visible (nvidia-smi lists none)"
    monkeypatch.setattr(formats, "gpu_names", lambda: ["GPU 0: NVIDIA H200"])
    assert tensorrt_missing() is None


def test_gpu_names_without_nvidia_smi(monkeypatch):
    monkeypatch.setattr(formats.shutil, "which", lambda name: None)
    assert formats.gpu_names() == []


# ---------------------------------------------------------- place_network


@pytest.fixture
def model_dir(tmp_path) -> Path:
    """A model folder as the export leaves it before place_network, plus a
    stale plan and TensorRT config from an earlier export."""
    folder = tmp_path / "net"
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.onnx").write_bytes(b"dummy onnx")
    (folder / "config.pbtxt").write_text(
        'name: "net"\nbackend: "onnxruntime"\nmax_batch_size: 8\n'
        'input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
        'output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
        "dynamic_batching { default_queue_policy { max_queue_size: 16 timeout_action: REJECT default_timeout_microseconds: 10000000 } }\n"
    )
    (folder / "1" / "model.plan").write_bytes(b"stale engine")
    (folder / "configs").mkdir()
    (folder / "configs" / "tensorrt.pbtxt").write_text("# stale\n")
    return folder


PROFILES = {"x": Profile((1, 4), (4, 4), (8, 4))}
UNAVAILABLE = "the tensorrt Python package is not installed (test)"


@pytest.fixture
def no_tensorrt(monkeypatch):
    """This machine's situation made explicit (so the tests also hold where TensorRT exists)."""
    monkeypatch.setattr(formats, "tensorrt_missing", lambda: UNAVAILABLE)


def test_place_network_falls_back_to_onnx(model_dir, no_tensorrt):
    said: list[str] = []
    placement = place_network(model_dir / "1" / "model.onnx", model_dir, ["tensorrt", "onnx"], PROFILES, log=said.append)
    assert placement.format == "onnx"
    assert placement.files == [model_dir / "1" / "model.onnx"]
    assert any("TensorRT not used" in note and UNAVAILABLE in note for note in placement.notes), placement.notes
    assert any("falling back to onnx" in line and UNAVAILABLE in line for line in said), said
    assert not (model_dir / "1" / "model.plan").exists()
    assert not (model_dir / "configs" / "tensorrt.pbtxt").exists()
    assert any(f"removed {model_dir / 'configs' / 'tensorrt.pbtxt'}" in note for note in placement.notes), placement.notes
    assert (model_dir / "1" / "model.onnx").read_bytes() == b"dummy onnx"
    # nothing TensorRT is left for the linter to find (the dummy ONNX file is, of course)
    assert [f.field for f in lint_repository(model_dir.parent)] == ["backend"]
    assert all("configs" not in f.path and "plan" not in f.message for f in lint_repository(model_dir.parent))


@without_tensorrt
def test_place_network_fallback_on_this_machine(model_dir):
    """The real check of this machine (no tensorrt package, no GPU)."""
    reason = tensorrt_missing()
    placement = place_network(model_dir / "1" / "model.onnx", model_dir, ["tensorrt", "onnx"], PROFILES, log=lambda _: None)
    assert placement.format == "onnx"
    assert any(reason in note for note in placement.notes), placement.notes
    assert not (model_dir / "1" / "model.plan").exists() and not (model_dir / "configs" / "tensorrt.pbtxt").exists()


def test_place_network_onnx_first_never_tries_tensorrt(model_dir, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("TensorRT must not be tried")

    monkeypatch.setattr(formats, "build_tensorrt_plan", refuse)
    placement = place_network(model_dir / "1" / "model.onnx", model_dir, ["onnx", "tensorrt"], PROFILES, log=lambda _: None)
    assert placement.format == "onnx"
    assert not (model_dir / "1" / "model.plan").exists() and not (model_dir / "configs" / "tensorrt.pbtxt").exists()


def test_place_network_tensorrt_only_raises(model_dir, no_tensorrt):
    with pytest.raises(RuntimeError) as error:
        place_network(model_dir / "1" / "model.onnx", model_dir, ["tensorrt"], PROFILES, log=lambda _: None)
    message = str(error.value)
    assert message.startswith("net: no format of ['tensorrt'] could be built")
    assert UNAVAILABLE in message
    assert not (model_dir / "1" / "model.plan").exists()


def test_place_network_tensorrt_only_leaves_no_stale_config(model_dir, no_tensorrt):
    with pytest.raises(RuntimeError):
        place_network(model_dir / "1" / "model.onnx", model_dir, ["tensorrt"], PROFILES, log=lambda _: None)
    assert not (model_dir / "configs" / "tensorrt.pbtxt").exists()


def test_build_tensorrt_plan_says_why(tmp_path, no_tensorrt):
    with pytest.raises(FormatUnavailable, match="tensorrt Python package"):
        formats.build_tensorrt_plan(tmp_path / "model.onnx", tmp_path / "model.plan", PROFILES)
    assert not (tmp_path / "model.plan").exists()


def test_place_network_tensorrt_success_writes_the_custom_config(model_dir, monkeypatch):
    """With the build and the check stubbed: the plan, configs/tensorrt.pbtxt
    (max_batch_size from the profile) and the ONNX file all stay."""

    def fake_build(onnx_path, plan_path, profiles, fp16=False):
        plan_path.write_bytes(b"fresh engine")

    checked: list[Path] = []
    monkeypatch.setattr(formats, "build_tensorrt_plan", fake_build)
    small = {"x": Profile((1, 4), (2, 4), (4, 4))}
    placement = place_network(model_dir / "1" / "model.onnx", model_dir, ["tensorrt", "onnx"], small, check_plan=checked.append, log=lambda _: None)
    plan, trt = model_dir / "1" / "model.plan", model_dir / "configs" / "tensorrt.pbtxt"
    assert placement.format == "tensorrt" and placement.files == [plan, trt, model_dir / "1" / "model.onnx"]
    assert checked == [plan] and plan.read_bytes() == b"fresh engine"
    config = parse(trt.read_text())
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 4


def test_place_network_failed_check_falls_back(model_dir, monkeypatch):
    def fake_build(onnx_path, plan_path, profiles, fp16=False):
        plan_path.write_bytes(b"wrong engine")

    def bad_check(plan_path):
        raise AssertionError("max abs difference 0.5")

    monkeypatch.setattr(formats, "build_tensorrt_plan", fake_build)
    placement = place_network(model_dir / "1" / "model.onnx", model_dir, ["tensorrt", "onnx"], PROFILES, check_plan=bad_check, log=lambda _: None)
    assert placement.format == "onnx"
    assert any("max abs difference 0.5" in note for note in placement.notes)
    assert not (model_dir / "1" / "model.plan").exists() and not (model_dir / "configs" / "tensorrt.pbtxt").exists()
