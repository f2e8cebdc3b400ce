"""The config linter: the real repository is clean, and each seeded mistake
is reported with its file and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lint.engine_configs import expected_configs
from lint.checks import lint_repository

from runtime.paths import MODEL_REPOSITORY as REPO
from runtime.paths import TEST_REPOSITORY as TEST_REPO


def test_real_repositories_lint_clean():
    assert [str(f) for f in lint_repository(REPO)] == []
    assert [str(f) for f in lint_repository(TEST_REPO)] == []


@pytest.fixture
def repo(tmp_path) -> Path:
    """A copy of the datatypes pipeline (ensemble, two Python models, ONNX)."""
    for name in ("datatypes", "datatypes_model1", "datatypes_model2", "datatypes_onnx"):
        shutil.copytree(REPO / name, tmp_path / name)
    assert lint_repository(tmp_path) == []
    return tmp_path


def edit(repo: Path, model: str, old: str, new: str, count: int = 1) -> None:
    path = repo / model / "config.pbtxt"
    text = path.read_text()
    assert old in text, f"seed text not found in {model}: {old}"
    path.write_text(text.replace(old, new, count))
    try:  # the engine configs follow config.pbtxt, as `python -m lint.engine_configs` keeps them
        derived = expected_configs(repo / model)
    except Exception:  # a config.pbtxt the test broke on purpose
        derived = {}
    for engine_path, engine_text in derived.items():
        if engine_path.exists():
            engine_path.write_text(engine_text)


def findings(repo: Path) -> list[tuple[str, str, str]]:
    """(model folder, field, message); a custom config's finding names its model."""
    folder = lambda path: path.parent.parent if path.parent.name == "configs" else path.parent  # noqa: E731
    return [(folder(Path(f.path)).name, f.field, f.message) for f in lint_repository(repo)]


def assert_found(repo: Path, model: str, field: str, words: str) -> None:
    found = findings(repo)
    assert any(m == model and f == field and words in msg for m, f, msg in found), found


def test_syntax_error_and_unknown_field(repo):
    edit(repo, "datatypes_model1", "max_batch_size: 8", "max_batch_size: 8\nmax_batchsize: 4")
    assert_found(repo, "datatypes_model1", "syntax", "max_batchsize")


def test_name_must_match_folder(repo):
    edit(repo, "datatypes_model2", 'name: "datatypes_model2"', 'name: "model2"')
    assert_found(repo, "datatypes_model2", "name", "does not match the folder name")


def test_missing_model_file(repo):
    (repo / "datatypes_model1" / "1" / "model.py").unlink()
    assert_found(repo, "datatypes_model1", "backend", "1/model.py is missing")
    (repo / "datatypes_onnx" / "1" / "model.onnx").unlink()
    assert_found(repo, "datatypes_onnx", "backend", "1/model.onnx is missing")


def test_missing_version_folder(repo):
    shutil.rmtree(repo / "datatypes" / "1")
    assert_found(repo, "datatypes", "version", "no numeric version folder")


def test_unbounded_queue(repo):
    edit(repo, "datatypes_model1", "max_queue_size: 64", "")
    assert_found(repo, "datatypes_model1", "dynamic_batching.default_queue_policy.max_queue_size", "bounded")


INTERNAL = 'default_queue_policy { max_queue_size: 64 }\n}\nparameters [ { key: "called_by" value: { string_value: "%s" } } ]'


def test_internal_model_keeps_no_queue_policy(repo):
    # datatypes_model2, a later step of the datatypes ensemble, made internal
    edit(repo, "datatypes_model2", "default_queue_policy { max_queue_size: 64 }\n}", INTERNAL % "datatypes")
    assert_found(repo, "datatypes_model2", "dynamic_batching.default_queue_policy", "prefetching")
    edit(repo, "datatypes_model2", "default_queue_policy { max_queue_size: 64 }\n", "")
    assert findings(repo) == []


def test_internal_model_names_its_callers(repo):
    edit(repo, "datatypes_model2", "default_queue_policy { max_queue_size: 64 }\n}", (INTERNAL % "datatypes, nowhere").replace("default_queue_policy { max_queue_size: 64 }\n", ""))
    assert_found(repo, "datatypes_model2", "parameters.called_by", "'nowhere' is no model")
    edit(repo, "datatypes_model2", "datatypes, nowhere", "datatypes_onnx")
    # the ensemble that runs it is not named, and datatypes_onnx, called directly, has a bounded queue
    assert [(f, m) for _, f, m in findings(repo)] == [("parameters.called_by", "ensemble 'datatypes' runs it as a step but is not named")]
    edit(repo, "datatypes_onnx", "max_queue_size: 64", "")
    assert_found(repo, "datatypes_model2", "parameters.called_by", "caller 'datatypes_onnx' has no bounded queue")


def test_entry_point_needs_a_queue_timeout(repo):
    # datatypes_model1 reads the ensemble's inputs; datatypes_onnx is called directly
    edit(repo, "datatypes_model1", "default_timeout_microseconds: 10000000", "")
    edit(repo, "datatypes_onnx", "default_timeout_microseconds: 10000000", "")
    for model in ("datatypes_model1", "datatypes_onnx"):
        assert_found(repo, model, "dynamic_batching.default_queue_policy.default_timeout_microseconds", "entry point needs a queue timeout")
    assert sorted({m for m, _, _ in findings(repo)}) == ["datatypes_model1", "datatypes_onnx"]  # not datatypes_model2, a later step


def test_timed_out_requests_are_rejected_not_delayed(repo):
    edit(repo, "datatypes_model1", "timeout_action: REJECT", "timeout_action: DELAY")
    assert_found(repo, "datatypes_model1", "dynamic_batching.default_queue_policy.timeout_action", "REJECT")


def test_non_batching_entry_point_needs_a_queue_policy(repo):
    path = repo / "datatypes_onnx" / "config.pbtxt"
    text = path.read_text().replace("max_batch_size: 16", "max_batch_size: 0")
    path.write_text(text[: text.index("dynamic_batching")])
    assert_found(repo, "datatypes_onnx", "dynamic_batching", "entry point without a queue policy")


def test_batching_model_without_dynamic_batching(repo):
    path = repo / "datatypes_model2" / "config.pbtxt"
    text = path.read_text()
    path.write_text(text[: text.index("dynamic_batching")])
    assert_found(repo, "datatypes_model2", "dynamic_batching", "no dynamic_batching block")


def test_ensemble_step_model_missing(repo):
    edit(repo, "datatypes", 'model_name: "datatypes_model2"', 'model_name: "datatypes_model3"')
    assert_found(repo, "datatypes", "ensemble_scheduling.step[1].model_name", "'datatypes_model3' is not in the repository")


def test_ensemble_input_map_key_not_an_input(repo):
    edit(repo, "datatypes", 'key: "model_1_input_bool"', 'key: "model_1_input_boolean"')
    assert_found(repo, "datatypes", "ensemble_scheduling.step[0].input_map[model_1_input_boolean]", "is not an input of")
    assert_found(repo, "datatypes", "ensemble_scheduling.step[0].input_map", "required input 'model_1_input_bool'")


def test_ensemble_input_map_value_unknown(repo):
    edit(repo, "datatypes", 'input_map { key: "model_2_input_INT8_array" value: "model1_to_model2_INT8_array" }', 'input_map { key: "model_2_input_INT8_array" value: "nowhere" }')
    assert_found(repo, "datatypes", "ensemble_scheduling.step[1].input_map[model_2_input_INT8_array]", "neither an ensemble input nor an earlier step's output")


def test_ensemble_dtype_mismatch(repo):
    edit(repo, "datatypes", '{ name: "ensemble_input_bool" data_type: TYPE_BOOL', '{ name: "ensemble_input_bool" data_type: TYPE_INT32')
    assert_found(repo, "datatypes", "ensemble_scheduling.step[0].input_map[model_1_input_bool]", "TYPE_INT32 but 'datatypes_model1' expects TYPE_BOOL")


def test_ensemble_output_not_produced(repo):
    edit(repo, "datatypes", 'value: "ensemble_output_bool"', 'value: "ensemble_output_boolean"')
    assert_found(repo, "datatypes", "output[ensemble_output_bool]", "no step produces this ensemble output")


def test_ensemble_tensor_produced_twice(repo):
    edit(repo, "datatypes", 'value: "model1_to_model2_UINT8_array" }', 'value: "model1_to_model2_string" }')
    # map order decides which of the two output_map entries is reported
    found = findings(repo)
    assert any(
        f.startswith("ensemble_scheduling.step[0].output_map[model_1_output_") and "'model1_to_model2_string' is already produced by datatypes_model1" in m
        for _, f, m in found
    ), found


def test_ensemble_output_dtype_mismatch(repo):
    edit(repo, "datatypes", '{ name: "ensemble_output_INT8_array" data_type: TYPE_INT8', '{ name: "ensemble_output_INT8_array" data_type: TYPE_UINT8')
    assert_found(repo, "datatypes", "output[ensemble_output_INT8_array].data_type", "declared TYPE_UINT8 but the step produces TYPE_INT8")


def test_onnx_name_dtype_and_rank_agree_with_graph(repo):
    edit(repo, "datatypes_onnx", 'name: "x_fp32"', 'name: "x_float"')
    edit(repo, "datatypes_onnx", '{ name: "y_int32" data_type: TYPE_INT32', '{ name: "y_int32" data_type: TYPE_INT64')
    edit(repo, "datatypes_onnx", '{ name: "x_uint8" data_type: TYPE_UINT8 dims: [ -1 ]', '{ name: "x_uint8" data_type: TYPE_UINT8 dims: [ -1, 3 ]')
    assert_found(repo, "datatypes_onnx", "input[x_float].name", "not a graph input")
    assert_found(repo, "datatypes_onnx", "output[y_int32].data_type", "TYPE_INT64 but the graph has TYPE_INT32")
    assert_found(repo, "datatypes_onnx", "input[x_uint8].dims", "rank 3 (with batch) but the graph has rank 2")


def test_onnx_rank_without_batch_axis(repo):
    # max_batch_size 0 removes the implicit batch axis: dims [-1] is then rank 1
    edit(repo, "datatypes_onnx", "max_batch_size: 16", "max_batch_size: 0")
    assert_found(repo, "datatypes_onnx", "input[x_fp32].dims", "rank 1 (with batch) but the graph has rank 2")


def test_cli_exit_code(repo, capsys):
    from lint.__main__ import main

    assert main([str(repo)]) == 0
    edit(repo, "datatypes_model2", 'name: "datatypes_model2"', 'name: "x"')
    assert main([str(repo)]) == 1
    assert "datatypes_model2/config.pbtxt: name:" in capsys.readouterr().out


# ------------------------------------------------- custom configurations
# <model>/configs/<name>.pbtxt, served by tritonserver --model-config-name=<name>


TRT = "datatypes_onnx/configs/tensorrt.pbtxt"


def tensorrt_text(repo: Path) -> str:
    """datatypes_onnx's config.pbtxt as the export's TensorRT custom config would be."""
    text = (repo / "datatypes_onnx" / "config.pbtxt").read_text()
    text = text.replace('backend: "onnxruntime"', 'platform: "tensorrt_plan"\ndefault_model_filename: "model.plan"')
    text = text.replace("kind: KIND_CPU", "kind: KIND_GPU")
    return "\n".join(line for line in text.splitlines() if not line.startswith("parameters"))


def write_custom(repo: Path, relpath: str, text: str) -> Path:
    path = repo / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def trt_repo(repo) -> Path:
    """`repo` plus a clean TensorRT custom config for datatypes_onnx (and a dummy plan)."""
    (repo / "datatypes_onnx" / "1" / "model.plan").write_bytes(b"not a real engine")
    write_custom(repo, TRT, tensorrt_text(repo))
    return repo


def edit_custom(repo: Path, relpath: str, old: str, new: str) -> None:
    path = repo / relpath
    text = path.read_text()
    assert old in text, f"seed text not found in {relpath}: {old}"
    path.write_text(text.replace(old, new, 1))


def assert_found_at(repo: Path, relpath: str, field: str, words: str) -> None:
    found = [(str(Path(f.path).relative_to(repo)), f.field, f.message) for f in lint_repository(repo)]
    assert any(p == relpath and f == field and words in m for p, f, m in found), found


def test_clean_custom_configs_have_no_finding(trt_repo):
    # a Python model's alternative config (more instances) and an ensemble's, next to the TensorRT one
    text = (trt_repo / "datatypes_model1" / "config.pbtxt").read_text()
    write_custom(trt_repo, "datatypes_model1/configs/busy.pbtxt", text.replace("count: 1", "count: 4"))
    write_custom(trt_repo, "datatypes/configs/busy.pbtxt", (trt_repo / "datatypes" / "config.pbtxt").read_text())
    write_custom(trt_repo, "datatypes/configs/README.md", "not a config: ignored")
    assert [str(f) for f in lint_repository(trt_repo)] == []


def test_custom_config_syntax_error(trt_repo):
    edit_custom(trt_repo, TRT, "max_batch_size: 16", "max_batch_size: 16\nmax_batchsize: 4")
    assert_found_at(trt_repo, TRT, "syntax", "max_batchsize")


def test_custom_config_syntax_checked_when_config_pbtxt_is_broken(trt_repo):
    edit(trt_repo, "datatypes_onnx", "max_batch_size: 16", "max_batch_size: sixteen")
    edit_custom(trt_repo, TRT, 'platform: "tensorrt_plan"', 'platfrom: "tensorrt_plan"')
    assert_found_at(trt_repo, "datatypes_onnx/config.pbtxt", "syntax", "sixteen")
    assert_found_at(trt_repo, TRT, "syntax", "platfrom")


def test_custom_config_name_must_match_folder(trt_repo):
    edit_custom(trt_repo, TRT, 'name: "datatypes_onnx"', 'name: "tensorrt"')
    assert_found_at(trt_repo, TRT, "name", "'tensorrt' does not match the folder name 'datatypes_onnx'")


def test_custom_config_needs_its_own_model_file(trt_repo):
    (trt_repo / "datatypes_onnx" / "1" / "model.plan").unlink()
    assert_found_at(trt_repo, TRT, "backend", "1/model.plan is missing")
    # without default_model_filename the platform decides the file
    edit_custom(trt_repo, TRT, 'default_model_filename: "model.plan"', "")
    assert_found_at(trt_repo, TRT, "backend", "1/model.plan is missing")
    # config.pbtxt itself is fine: its model.onnx is there
    assert all(not f.path.endswith("config.pbtxt") for f in lint_repository(trt_repo))


def test_custom_config_without_backend_or_platform(trt_repo):
    edit_custom(trt_repo, TRT, 'platform: "tensorrt_plan"', "")
    assert_found_at(trt_repo, TRT, "backend", "neither backend nor platform is set")


def test_custom_config_unbounded_queue(trt_repo):
    edit_custom(trt_repo, TRT, "max_queue_size: 64", "")
    assert_found_at(trt_repo, TRT, "dynamic_batching.default_queue_policy.max_queue_size", "bounded")


def test_custom_config_batching_without_dynamic_batching(trt_repo):
    path = trt_repo / TRT
    text = path.read_text()
    path.write_text(text[: text.index("dynamic_batching")])
    assert_found_at(trt_repo, TRT, "dynamic_batching", "no dynamic_batching block")


def test_custom_config_tensor_names_must_match_config_pbtxt(trt_repo):
    edit_custom(trt_repo, TRT, 'name: "x_fp32"', 'name: "x_float"')
    edit_custom(trt_repo, TRT, '{ name: "y_bool" data_type: TYPE_BOOL dims: [ -1 ] }', "")
    edit_custom(trt_repo, TRT, '{ name: "y_uint8" data_type: TYPE_UINT8 dims: [ -1 ] },', '{ name: "y_uint8" data_type: TYPE_UINT8 dims: [ -1 ] }')
    assert_found_at(trt_repo, TRT, "input[x_float].name", "not an input of config.pbtxt")
    assert_found_at(trt_repo, TRT, "input", "'x_fp32' of config.pbtxt is not declared")
    assert_found_at(trt_repo, TRT, "output", "'y_bool' of config.pbtxt is not declared")


def test_custom_config_dtypes_must_match_config_pbtxt(trt_repo):
    edit_custom(trt_repo, TRT, '{ name: "x_fp16" data_type: TYPE_FP16', '{ name: "x_fp16" data_type: TYPE_FP32')
    edit_custom(trt_repo, TRT, '{ name: "y_int64" data_type: TYPE_INT64', '{ name: "y_int64" data_type: TYPE_INT32')
    assert_found_at(trt_repo, TRT, "input[x_fp16].data_type", "TYPE_FP32 but config.pbtxt has TYPE_FP16")
    assert_found_at(trt_repo, TRT, "output[y_int64].data_type", "TYPE_INT32 but config.pbtxt has TYPE_INT64")


def test_custom_config_batch_axis_must_match_config_pbtxt(trt_repo):
    # a smaller max_batch_size is fine (the TensorRT profile caps it); dropping the batch axis is not
    edit_custom(trt_repo, TRT, "max_batch_size: 16", "max_batch_size: 4")
    assert lint_repository(trt_repo) == []
    edit_custom(trt_repo, TRT, "max_batch_size: 4", "max_batch_size: 0")
    assert_found_at(trt_repo, TRT, "max_batch_size", "0 but config.pbtxt has 16")


def test_custom_onnx_config_checked_against_the_graph(repo):
    # a custom config may keep ONNX Runtime (say on GPU instances): its tensors are checked against the graph too
    text = (repo / "datatypes_onnx" / "config.pbtxt").read_text().replace("kind: KIND_CPU", "kind: KIND_GPU")
    text = text.replace('{ name: "x_uint8" data_type: TYPE_UINT8 dims: [ -1 ]', '{ name: "x_uint8" data_type: TYPE_UINT8 dims: [ -1, 3 ]')
    write_custom(repo, "datatypes_onnx/configs/gpu.pbtxt", text)
    assert_found_at(repo, "datatypes_onnx/configs/gpu.pbtxt", "input[x_uint8].dims", "rank 3 (with batch) but the graph has rank 2")


def test_custom_ensemble_config_wiring(repo):
    text = (repo / "datatypes" / "config.pbtxt").read_text()
    write_custom(repo, "datatypes/configs/other.pbtxt", text.replace('model_name: "datatypes_model2"', 'model_name: "datatypes_model3"'))
    assert_found_at(repo, "datatypes/configs/other.pbtxt", "ensemble_scheduling.step[1].model_name", "'datatypes_model3' is not in the repository")
    # the version folder is a folder matter: reported once, on config.pbtxt
    shutil.rmtree(repo / "datatypes" / "1")
    found = [f for f in lint_repository(repo) if f.field == "version"]
    assert [Path(f.path).name for f in found] == ["config.pbtxt"], found


def test_cli_names_the_custom_config(trt_repo, capsys):
    from lint.__main__ import main

    assert main([str(trt_repo)]) == 0
    assert "(2 custom configs in <model>/configs/)" in capsys.readouterr().err  # tensorrt + openvino
    edit_custom(trt_repo, TRT, 'name: "datatypes_onnx"', 'name: "x"')
    assert main([str(trt_repo)]) == 1
    assert "datatypes_onnx/configs/tensorrt.pbtxt: name:" in capsys.readouterr().out


def test_unreadable_onnx_file_is_a_finding(repo):
    (repo / "datatypes_onnx" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    assert_found(repo, "datatypes_onnx", "backend", "1/model.onnx cannot be read as ONNX")
