"""`export/vit.py --source` and `export/clip.py --source` with checkpoints of
other sizes than the default ones, into a scratch copy of the repository:
the export succeeds (it checks ONNX against torch itself), falls back from
TensorRT to ONNX on this machine with a message, rewrites the dims of the
configs to the checkpoint's, and the result lints clean. A re-export whose
recorded source folder is gone uses the checkpoint kept of it, and without
that copy says what to run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from triton_helpers import without_tensorrt

from export import clip, vit
from export.common import cli
from lint.checks import lint_repository
from runtime.paths import MODEL_REPOSITORY

VIT_MODELS = ("image_decode", "vit", "vit_preprocess", "vit_model", "vit_python")
CLIP_MODELS = ("image_decode", "clip_image_embedding", "clip_image_preprocess", "clip_image_encoder", "clip_text_embedding", "clip_tokenizer", "clip_text_encoder")


EXPORTS = {"vit": vit.main, "clip": clip.main}


def scratch_repository(root: Path, models) -> Path:
    """The models' committed files (config.pbtxt, model.py, labels), no exports."""
    for model in models:
        shutil.copytree(
            MODEL_REPOSITORY / model,
            root / model,
            ignore=lambda folder, names: [n for n in names if n.endswith((".onnx", ".plan", ".json")) or n in ("checkpoint", "__pycache__", "configs")],
        )
    return root


def dims_line(config: Path, tensor: str) -> str:
    return next(line for line in config.read_text().splitlines() if f'name: "{tensor}"' in line)


@without_tensorrt
def test_vit_export_of_another_checkpoint(tmp_path, capsys):
    from transformers import ViTConfig, ViTModel
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    source = tmp_path / "vit-64"
    ViTModel(ViTConfig(image_size=64, patch_size=16, hidden_size=48, num_hidden_layers=2, num_attention_heads=2, intermediate_size=96)).save_pretrained(source)
    ViTImageProcessorPil(size={"height": 64, "width": 64}, image_mean=[0.5, 0.4, 0.3]).save_pretrained(source)
    repo = scratch_repository(tmp_path / "repo", VIT_MODELS)

    code = EXPORTS["vit"](["--source", str(source), "--output-dir", str(repo), "--checkpoint-dir", str(tmp_path / "kept")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "TensorRT not used" in out and "falling back to onnx" in out
    assert "[17, 48]" in out  # 16 patches + CLS, hidden 48
    for model in ("vit_preprocess", "vit_model"):
        assert "dims: [ 3, 64, 64 ]" in dims_line(repo / model / "config.pbtxt", "pixel_values")
    assert (repo / "vit_python" / "1" / "checkpoint" / "model.safetensors").is_file()
    assert not (repo / "vit_model" / "configs").exists()
    assert lint_repository(repo) == []


def tiny_clip(folder: Path) -> Path:
    """A CLIP checkpoint of 64 px pictures and 32 wide towers, seeded."""
    import torch
    from transformers import CLIPConfig, CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    torch.manual_seed(5)
    config = CLIPConfig(
        projection_dim=64,
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        vision_config=dict(image_size=64, patch_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
    )
    CLIPModel(config).save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}).save_pretrained(folder)
    return folder


@without_tensorrt
def test_clip_export_of_another_checkpoint(tmp_path, capsys):
    source = tiny_clip(tmp_path / "clip-64")
    repo = scratch_repository(tmp_path / "repo", CLIP_MODELS)

    code = EXPORTS["clip"](["--source", str(source), "--output-dir", str(repo), "--checkpoint-dir", str(tmp_path / "kept")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "D = 64" in out and out.count("falling back to onnx") == 2
    assert (tmp_path / "kept" / "tokenizer.json").is_file()  # no tokenizer in the source: the real one, rebuilt
    for model in ("clip_image_encoder", "clip_text_encoder", "clip_image_embedding", "clip_text_embedding"):
        assert "dims: [ 64 ]" in dims_line(repo / model / "config.pbtxt", "embedding")
    for model in ("clip_image_preprocess", "clip_image_encoder"):
        assert "dims: [ 3, 64, 64 ]" in dims_line(repo / model / "config.pbtxt", "pixel_values")
    assert lint_repository(repo) == []


@pytest.mark.parametrize("name", ["vit", "clip"])
def test_unknown_format_is_refused(name, capsys):
    with pytest.raises(SystemExit):
        EXPORTS[name](["--format", "tflite"])
    assert "--format takes a comma-separated priority list of tensorrt, onnx" in capsys.readouterr().err


# ---------------------------------------------------------------- a re-export from a recorded source


@pytest.fixture
def recorded_clip_source(tmp_path, monkeypatch):
    """`export/clip.py --source <folder>` into a scratch repository as if it
    were the repository (so a run without --source takes the recorded
    source), then the folder deleted; the record of each run is kept here."""
    source = tiny_clip(tmp_path / "clip-64")
    repo = scratch_repository(tmp_path / "repo", CLIP_MODELS)
    records: list[tuple[str, str | None]] = []
    monkeypatch.setattr(cli, "MODEL_REPOSITORY", repo)
    monkeypatch.setattr(cli, "write_record", lambda name, source, started, notes="": records.append((name, source)))
    argv = ["--output-dir", str(repo), "--checkpoint-dir", str(tmp_path / "kept"), "--format", "onnx"]
    assert clip.main([*argv, "--source", str(source)]) == 0
    monkeypatch.setattr(cli, "recorded_source", lambda name: records[-1][1])
    shutil.rmtree(source)
    return argv, records, tmp_path / "kept"


def test_a_re_export_uses_the_kept_copy_of_a_source_that_is_gone(recorded_clip_source, capsys):
    argv, records, kept = recorded_clip_source
    weights = (kept / "model.safetensors").read_bytes()
    (Path(argv[1]) / "clip_text_encoder" / "1" / "model.onnx").unlink()  # what makes `make export` run it
    capsys.readouterr()
    assert clip.main(argv) == 0
    out = capsys.readouterr().out
    assert f"using {kept}, the copy kept of the recorded source" in out and "D = 64" in out
    assert (Path(argv[1]) / "clip_text_encoder" / "1" / "model.onnx").is_file()
    assert (kept / "model.safetensors").read_bytes() == weights
    assert records[-1] == ("clip", records[0][1])  # the record still names the source


def test_a_re_export_without_the_source_or_its_kept_copy_says_what_to_run(recorded_clip_source):
    argv, records, kept = recorded_clip_source
    shutil.rmtree(kept)
    with pytest.raises(SystemExit) as failure:
        clip.main(argv)
    message = str(failure.value)
    assert message.startswith("export clip: the recorded source ")
    assert records[0][1] in message and str(kept) in message
    assert "python export/clip.py --source <folder or hub name>" in message and "python export/clip.py --source default" in message
    assert len(records) == 1 and not kept.exists()


def test_a_source_folder_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(SystemExit, match=f"export vit: --source {tmp_path / 'nowhere'}: no such folder"):
        vit.main(["--source", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "repo"), "--checkpoint-dir", str(tmp_path / "kept")])
