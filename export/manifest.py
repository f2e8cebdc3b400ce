"""Every file an export produces, declared once, and what decides its content.

`python -m export` (make export) runs an export when one of its outputs is
missing, when it was never recorded, or when one of its inputs (its script,
the code it runs, the pinned requirements) changed since the recorded run;
`python -m export --clean` (make clean) removes every output and record.

Standard library only: `make clean` runs before any virtual environment exists."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from runtime.paths import REPO_ROOT

RECORDS_DIR = REPO_ROOT / "build" / "exports"
COMMON_INPUTS = ("export/common/*.py", "requirements/export.txt", "requirements/nodeps.txt", "requirements/serve.txt")


@dataclass(frozen=True)
class Export:
    name: str
    outputs: tuple[str, ...]
    """Files and folders (repository-relative) every run produces."""
    inputs: tuple[str, ...]
    """Files (glob patterns) whose content decides the outputs, besides the script."""
    optional: tuple[str, ...] = ()
    """Produced by some runs only (TensorRT plans and their configs); each ONNX
    output's weights file (`<file>.onnx.data`, written when the network is
    large: export/common/onnx_files.py) is added here."""

    def __post_init__(self):
        weights = tuple(f"{output}.data" for output in self.outputs if output.endswith(".onnx"))
        object.__setattr__(self, "optional", self.optional + weights)

    @property
    def script(self) -> Path:
        return REPO_ROOT / "export" / f"{self.name}.py"

    def record_path(self, root: Path = REPO_ROOT) -> Path:
        return root / RECORDS_DIR.relative_to(REPO_ROOT) / f"{self.name}.json"

    def input_files(self, root: Path = REPO_ROOT) -> list[Path]:
        patterns = (f"export/{self.name}.py", *COMMON_INPUTS, *self.inputs)
        return sorted({path for pattern in patterns for path in root.glob(pattern) if path.is_file()})

    def fingerprint(self, root: Path = REPO_ROOT) -> dict[str, str]:
        """sha256 of every input, by repository-relative path."""
        return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest() for path in self.input_files(root)}

    def missing_outputs(self, root: Path = REPO_ROOT) -> list[str]:
        return [output for output in self.outputs if not (root / output).exists()]


def _repository(*paths: str) -> tuple[str, ...]:
    return tuple(f"model_repository/{path}" for path in paths)


def _tensorrt(model: str) -> tuple[str, ...]:
    return _repository(f"{model}/1/model.plan", f"{model}/configs/tensorrt.pbtxt")


EXPORTS = (
    Export(
        "datatypes_onnx",
        outputs=_repository("datatypes_onnx/1/model.onnx"),
        inputs=("references/datatypes.py",),
    ),
    Export(
        "text_embedding",
        outputs=_repository(
            "text_encoder/1/model.onnx",
            "text_tokenizer/1/tokenizer.json",
            "text_tokenizer/1/sentence_bert_config.json",
            "text_tokenizer/1/vocab.txt",
            "text2ids/1/vocab.txt",
        ),
        inputs=("pipelines/text/tokenizer.py", "pipelines/text/pooling.py", "references/text.py", "testsets/sentences.py"),
    ),
    Export(
        "orientation",
        outputs=_repository("orientation_classifier/1/model.onnx"),
        inputs=("pipelines/image/orientation.py", "pipelines/image/decode.py", "references/orientation.py"),
    ),
    Export(
        "ocr",
        outputs=_repository(
            "ocr_det/1/model.onnx",
            "ocr_det/1/ppocrv4.onnx",
            "ocr_cls/1/model.onnx",
            "ocr_rec/1/model.onnx",
            "ocr_rec/1/ppocrv4.onnx",
            "ocr_recognize/1/ppocrv6_characters.txt",
            "ocr_recognize/1/ppocrv4_characters.txt",
            "ocr_bls/1/ppocrv6_characters.txt",
            "ocr_bls/1/ppocrv4_characters.txt",
        ),
        inputs=("pipelines/ocr/*.py", "pipelines/image/decode.py", "references/ocr.py"),
    ),
    Export(
        "ocr_int8",
        outputs=_repository("ocr_det/1/model_int8.onnx", "ocr_rec/1/model_int8.onnx"),
        # the calibration pages' generators and the placed f32 networks decide the result
        inputs=(
            "export/ocr_quantize.py",
            "export/ocr.py",
            "testsets/documents.py",
            "testsets/multilingual.py",
            "testsets/ground_truth.py",
            "model_repository/ocr_det/1/model.onnx",
            "model_repository/ocr_rec/1/model.onnx",
        ),
    ),
    Export(
        "vit",
        outputs=(
            "checkpoints/vit",
            *_repository("vit_python/1/checkpoint", "vit_preprocess/1/preprocessor_config.json", "vit_model/1/model.onnx"),
        ),
        inputs=("pipelines/vit/*.py", "pipelines/image/hf_processor.py", "pipelines/image/lut.py"),
        optional=_tensorrt("vit_model"),
    ),
    Export(
        "clip",
        outputs=(
            "checkpoints/clip",
            *_repository(
                "clip_tokenizer/1/tokenizer.json",
                "clip_tokenizer/1/tokenizer_config.json",
                "clip_image_preprocess/1/preprocessor_config.json",
                "clip_image_encoder/1/model.onnx",
                "clip_text_encoder/1/model.onnx",
            ),
        ),
        inputs=("pipelines/image/hf_processor.py", "pipelines/image/lut.py", "pipelines/text/tokenizer.py", "references/clip.py"),
        optional=_tensorrt("clip_image_encoder") + _tensorrt("clip_text_encoder"),
    ),
    Export(
        "stable_diffusion",
        outputs=(
            "checkpoints/stable_diffusion",
            *_repository(
                "sd_text_encoder/1/model.onnx",
                "sd_unet/1/model.onnx",
                "sd_unet/1/model_ort.onnx",
                "sd_vae_decoder/1/model.onnx",
                *(
                    f"{model}/1/{name}"
                    for model in ("stable_diffusion", "stable_diffusion_stream")
                    for name in ("tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json", "scheduler_config.json", "pipeline.json")
                ),
            ),
        ),
        inputs=("pipelines/stable_diffusion/params.py", "pipelines/stable_diffusion/tokens.py", "pipelines/text/tokenizer.py"),
        optional=_tensorrt("sd_text_encoder") + _tensorrt("sd_unet") + _tensorrt("sd_vae_decoder"),
    ),
)

BY_NAME = {export.name: export for export in EXPORTS}
