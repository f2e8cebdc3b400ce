"""`export/vit.py --source` and `export/clip.py --source` with checkpoints of
other sizes than the default ones, into a scratch copy of the repository:
the export succeeds (it checks ONNX against torch itself), falls back from
TensorRT to ONNX on this machine with a message, rewrites the dims of the
configs to the checkpoint's, and the result lints clean."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from triton_helpers import without_tensorrt

from export import clip, vit
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


@without_tensorrt
def test_clip_export_of_another_checkpoint(tmp_path, capsys):
    from transformers import CLIPConfig, CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    source = tmp_path / "clip-64"
    config = CLIPConfig(
        projection_dim=64,
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        vision_config=dict(image_size=64, patch_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
    )
    CLIPModel(config).save_pretrained(source)
    CLIPImageProcessorPil(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}).save_pretrained(source)
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
