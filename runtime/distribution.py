"""Locate the Triton 2.51 binaries that the nvidia-pytriton wheel ships and
assemble the directories the server and perf_analyzer need on a CPU machine;
or, in the official container (docker/Dockerfile), the server installed there
(/opt/tritonserver, or $TRITON_SERVER_ROOT), with its own native backends."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from runtime.paths import BACKENDS_DIR, BUILD_DIR


SYSTEM_ROOT_ENV = "TRITON_SERVER_ROOT"
SYSTEM_ROOT = Path("/opt/tritonserver")


@dataclass(frozen=True)
class TritonDistribution:
    root: Path  # .../site-packages/pytriton/tritonserver, or /opt/tritonserver
    libs: Path | None  # .../site-packages/nvidia_pytriton.libs; None for an installed server
    system: bool = False
    """An installed server (the official container): its own backends
    directory and libraries, nothing assembled."""

    @property
    def backends_dir(self) -> Path:
        return self.root / "backends"

    @property
    def server_binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def python_backend(self) -> Path:
        return self.root / "backends" / "python"

    def stub_for(self, version: tuple[int, int]) -> Path:
        return self.root / "python_backend_stubs" / f"{version[0]}.{version[1]}" / "triton_python_backend_stub"


def find_distribution() -> TritonDistribution:
    """$TRITON_SERVER_ROOT if set, else the nvidia-pytriton wheel, else /opt/tritonserver."""
    if os.environ.get(SYSTEM_ROOT_ENV):
        return _system_distribution(Path(os.environ[SYSTEM_ROOT_ENV]))
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        if (SYSTEM_ROOT / "bin" / "tritonserver").exists():
            return _system_distribution(SYSTEM_ROOT)
        raise RuntimeError("nvidia-pytriton is not installed in this environment; run `make setup`")
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    dist = TritonDistribution(root=package_dir / "tritonserver", libs=package_dir.parent / "nvidia_pytriton.libs")
    if not dist.server_binary.exists():
        raise RuntimeError(f"tritonserver binary missing at {dist.server_binary}")
    return dist


def _system_distribution(root: Path) -> TritonDistribution:
    dist = TritonDistribution(root=root, libs=None, system=True)
    if not dist.server_binary.exists():
        raise RuntimeError(f"tritonserver binary missing at {dist.server_binary} (${SYSTEM_ROOT_ENV})")
    return dist


def _replace(src: Path, dst: Path) -> None:
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    shutil.copy2(src, dst)


def assemble_backend_dir(dest: Path = BUILD_DIR / "backends", dist: TritonDistribution | None = None) -> Path:
    """python backend + the stub for this interpreter, plus the project's
    Python-based backends (backends/<name>/model.py)."""
    dist = dist or find_distribution()
    python_dir = dest / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for item in dist.python_backend.iterdir():
        if item.is_file():
            _replace(item, python_dir / item.name)
    stub = dist.stub_for(sys.version_info[:2])
    if not stub.exists():
        raise RuntimeError(f"no python backend stub for Python {sys.version_info[0]}.{sys.version_info[1]} in {stub.parent.parent}")
    _replace(stub, python_dir / stub.name)
    for backend in sorted(BACKENDS_DIR.iterdir()):
        if (backend / "model.py").exists():
            (dest / backend.name).mkdir(parents=True, exist_ok=True)
            _replace(backend / "model.py", dest / backend.name / "model.py")
    return dest


def assemble_lib_dir(dest: Path = BUILD_DIR / "lib", dist: TritonDistribution | None = None) -> Path:
    """Plain-soname links to the wheel's bundled libraries that perf_analyzer
    (from tritonclient) expects from the system: libcudart.so.12, libb64.so.0d."""
    dist = dist or find_distribution()
    dest.mkdir(parents=True, exist_ok=True)
    wanted = {"libcudart-": "libcudart.so.12", "libb64-": "libb64.so.0d"}
    for lib in dist.libs.iterdir():
        for prefix, soname in wanted.items():
            if lib.name.startswith(prefix):
                link = dest / soname
                if link.exists() or link.is_symlink():
                    link.unlink()
                link.symlink_to(lib)
    return dest


def server_environment(dist: TritonDistribution | None = None, base: dict | None = None) -> dict[str, str]:
    """Environment for tritonserver and its stubs: the wheel's libraries on
    LD_LIBRARY_PATH and this interpreter's bin/ first on PATH, so the Python
    models run in the project's virtual environment."""
    dist = dist or find_distribution()
    env = dict(os.environ if base is None else base)
    env.setdefault("HF_HUB_OFFLINE", "1")
    if dist.system:  # the container's server: its libraries and python3 are where they belong
        return env
    lib_paths = [str(dist.libs), str(BUILD_DIR / "lib")]
    # The stub links libpython3.X.so.1.0 and would take the system's copy; the
    # interpreter's own must win, or its stdlib extension modules can need
    # symbols the other lacks (a pyenv 3.11.7 `_ssl` under Debian's 3.11.2
    # libpython: "undefined symbol: _PyModule_Add", so no `import ssl`).
    python_libdir = sysconfig.get_config_var("LIBDIR")
    if python_libdir and Path(python_libdir, sysconfig.get_config_var("INSTSONAME") or "").is_file():
        lib_paths.insert(0, python_libdir)
    if env.get("LD_LIBRARY_PATH"):
        lib_paths.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(lib_paths)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "")])
    return env


def main() -> None:
    dist = find_distribution()
    print(f"backend directory: {assemble_backend_dir(dist=dist)}")
    print(f"library links:     {assemble_lib_dir(dist=dist)}")


if __name__ == "__main__":
    main()
