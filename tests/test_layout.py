"""The layout holds: every top-level package imports only packages on floors
below its own (`FLOORS`); the serving package (pipelines/) and the
Python-based backends import nothing of the tooling and derive no path from a
checkout; every model.py is a thin adapter; `pip install .` (the Docker
image's way) installs the serving package and nothing else."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from runtime.paths import BACKENDS_DIR, MODEL_REPOSITORY, REPO_ROOT, TEST_REPOSITORY

# Floor of each top-level package, lowest first: a package may import its own
# modules and those of lower floors, never a package on its floor or above.
FLOORS = {
    "pipelines": 0,  # what runs inside tritonserver
    "backends": 1,
    "clients": 1,  # what talks to a server
    "runtime": 2,  # launcher, watchdog, paths
    "references": 2,  # in-process reference implementations
    "lint": 3,  # config parser, linter, engine configs
    "testsets": 3,  # test pictures, texts and requests
    "deploy": 4,  # publishing, balancer
    "export": 4,  # model files from their sources
    "perf": 5,  # benchmarks and the soak
    "ui": 6,  # the web page
}
SERVING = sorted((REPO_ROOT / "pipelines").rglob("*.py"))
TOOLING = tuple(package for package, floor in FLOORS.items() if floor > 0) + ("tests",)
MODEL_FILES = sorted(MODEL_REPOSITORY.glob("*/1/model.py")) + sorted(TEST_REPOSITORY.glob("*/1/model.py")) + sorted(BACKENDS_DIR.glob("*/model.py"))


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def package_files(package: str) -> list[Path]:
    return sorted(path for path in (REPO_ROOT / package).rglob("*.py") if "__pycache__" not in path.parts)


def test_every_top_level_python_package_has_a_floor():
    packages = {path.parent.name for path in REPO_ROOT.glob("*/__init__.py")} | {path.parent.name for path in REPO_ROOT.glob("*/__main__.py")}
    assert packages - {"tests"} <= set(FLOORS), packages - set(FLOORS)


@pytest.mark.parametrize("package", sorted(FLOORS))
def test_nothing_imports_upward(package):
    upward = [
        f"{path.relative_to(REPO_ROOT)} imports {root}"
        for path in package_files(package)
        for root in imported_roots(path) & set(FLOORS)
        if root != package and FLOORS[root] >= FLOORS[package]
    ]
    assert not upward, upward


@pytest.mark.parametrize("path", SERVING + MODEL_FILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_what_runs_in_the_server_imports_no_tooling(path):
    assert not imported_roots(path) & set(TOOLING), path
    text = path.read_text()
    assert "REPO_ROOT" not in text and "__file__" not in text, f"{path}: paths are passed in, not derived from a checkout"


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_model_py_is_a_thin_adapter(path):
    tree = ast.parse(path.read_text())
    code = [node for node in tree.body if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
    assert len(path.read_text().splitlines()) <= 20 or "tests" in path.parts, path
    assert any(isinstance(node, ast.Assign) and node.targets[0].id == "TritonPythonModel" for node in code if isinstance(node, ast.Assign)), path


def test_the_wheel_holds_the_serving_package_only(tmp_path):
    """Built from a copy of the checkout's tracked files (a build in place would leave build/ and egg-info behind)."""
    source = tmp_path / "source"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in (name for name in files if (REPO_ROOT / name).is_file()):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes((REPO_ROOT / name).read_bytes())
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "wheels"), str(source)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "wheels").glob("*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist() if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"pipelines"}, tops
