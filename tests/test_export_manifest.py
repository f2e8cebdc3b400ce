"""Generated files are known: every file an export produces is declared in
export/manifest.py and ignored by git, nothing else in the repository is; a
deleted output is rebuilt by `python -m export` (make export) and a current
one is not; a re-export takes the source recorded by the last export;
`--clean` (make clean) removes every declared and recorded output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from export.__main__ import clean, record_of, why_stale
from export.manifest import BY_NAME, EXPORTS, REPO_ROOT
from references.ocr import package_dir


def git_ignored(paths: list[str]) -> set[str]:
    done = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=REPO_ROOT, capture_output=True, text=True)
    return set(done.stdout.split())


def test_every_declared_output_is_ignored_by_git():
    declared = [path for export in EXPORTS for path in (*export.outputs, *export.optional)]
    assert git_ignored(declared) == set(declared)


def test_nothing_else_in_the_repository_is_ignored():
    """After `make export`, the ignored files under model_repository/ are the declared outputs (and caches)."""
    declared = {path for export in EXPORTS for path in (*export.outputs, *export.optional)}
    present = [str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "model_repository").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    undeclared = [p for p in git_ignored(present) if not any(p == d or p.startswith(d + "/") for d in declared)]
    assert undeclared == []


def test_every_export_is_current_after_make_export():
    assert {export.name: why_stale(export) for export in EXPORTS} == {export.name: None for export in EXPORTS}


def run_export(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "export", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_deleted_output_is_rebuilt_and_a_current_one_is_not():
    onnx = REPO_ROOT / "model_repository" / "datatypes_onnx" / "1" / "model.onnx"
    onnx.unlink()
    assert why_stale(BY_NAME["datatypes_onnx"]) == "missing model_repository/datatypes_onnx/1/model.onnx"
    out = run_export("datatypes_onnx")
    assert "export datatypes_onnx: missing" in out and onnx.is_file()
    assert run_export("datatypes_onnx").strip() == "export datatypes_onnx: current (source default)"


def test_a_re_export_uses_the_recorded_source(tmp_path):
    source = tmp_path / "ocr-models"
    shutil.copytree(package_dir("PP-OCRv6") / "models", source)
    script = [sys.executable, "export/ocr.py"]
    try:
        subprocess.run([*script, "--source", str(source)], cwd=REPO_ROOT, check=True, capture_output=True, timeout=600)
        assert record_of(BY_NAME["ocr"])["source"] == str(source)
        (REPO_ROOT / "model_repository" / "ocr_rec" / "1" / "model.onnx").unlink()
        out = run_export("ocr")
        assert f"re-exporting from the recorded source {str(source)!r}" in out
        assert record_of(BY_NAME["ocr"])["source"] == str(source)
    finally:
        subprocess.run([*script, "--source", "default"], cwd=REPO_ROOT, check=True, capture_output=True, timeout=600)
    assert record_of(BY_NAME["ocr"])["source"] == "default"


def test_clean_removes_every_declared_and_recorded_output(tmp_path):
    for export in EXPORTS:
        for relative in export.outputs[:1] + export.optional[:1]:
            (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / relative).write_text("generated")
        record = export.record_path(tmp_path)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"files": list(export.outputs[:1])}))
    (tmp_path / "model_repository" / "kept.txt").write_text("a file no export produces")
    assert clean(tmp_path) == sum(len(e.outputs[:1] + e.optional[:1]) for e in EXPORTS)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["model_repository/kept.txt"]
    assert not any(p.name == "configs" for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("export", EXPORTS, ids=lambda e: e.name)
def test_each_export_says_where_its_outputs_go(export):
    assert export.script.is_file()
    assert all(path.startswith(("model_repository/", "checkpoints/")) for path in (*export.outputs, *export.optional))
