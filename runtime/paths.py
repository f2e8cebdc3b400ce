"""Where things are in a checkout of this repository."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_REPOSITORY = REPO_ROOT / "model_repository"
TEST_REPOSITORY = REPO_ROOT / "tests" / "model_repository"
BUILD_DIR = REPO_ROOT / "build"
BACKENDS_DIR = REPO_ROOT / "backends"
CHECKPOINTS_DIR = REPO_ROOT / "checkpoints"


def checkpoint_dir(pipeline: str) -> Path:
    """The checkpoint an export used (the reference weights of the tests and benchmarks)."""
    return CHECKPOINTS_DIR / pipeline
