"""docker/Dockerfile stays in lockstep with the local runtime: the same Triton
release and the same pinned requirement files, no pins of its own."""

from __future__ import annotations

import json
import re
from pathlib import Path

from runtime.paths import REPO_ROOT as ROOT

DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()

# nvidia-pytriton release -> the Triton release (container tag) its wheel ships
PYTRITON_TO_CONTAINER = {"0.7.0": "24.10"}
CONTAINER_TO_TRITON = {"24.10": "2.51.0"}


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            name, _, version = line.partition("==")
            assert version, f"{path.name}: '{line}' is not pinned with =="
            found[re.sub(r"\[.*\]", "", name).lower()] = version
    return found


def test_same_triton_release_as_local_runtime():
    pytriton = pins(ROOT / "requirements" / "runtime-cpu.txt")["nvidia-pytriton"]
    tag = re.search(r"^FROM nvcr.io/nvidia/tritonserver:(\S+)-py3", DOCKERFILE, re.M).group(1)
    assert tag == PYTRITON_TO_CONTAINER[pytriton]
    assert pins(ROOT / "requirements" / "dev.txt")["tritonclient"] == CONTAINER_TO_TRITON[tag]


def test_dockerfile_installs_the_same_requirement_files():
    for name in ("serve.txt", "dev.txt", "export.txt"):
        assert f"-r requirements/{name}" in DOCKERFILE, name
    assert "--no-deps -r requirements/nodeps.txt" in DOCKERFILE
    assert "make export" in DOCKERFILE


def test_dockerfile_pins_nothing_of_its_own():
    local = {}
    for name in ("serve.txt", "dev.txt", "export.txt", "runtime-cpu.txt", "nodeps.txt"):
        local.update(pins(ROOT / "requirements" / name))
    for package, version in re.findall(r"([A-Za-z0-9_.\-\[\]]+)==([0-9][^\s\"']*)", DOCKERFILE):
        assert local.get(re.sub(r"\[.*\]", "", package).lower()) == version, f"Dockerfile pins {package}=={version}"


def test_every_requirement_is_pinned():
    for path in (ROOT / "requirements").glob("*.txt"):
        pins(path)


def test_the_container_runs_the_launcher_on_its_own_tritonserver():
    """The CMD is the launcher of `make serve` (keys, watchdog, drain; its
    flags are started for real in tests/test_deployments.py), on the
    official image's /opt/tritonserver and native backends."""
    command = json.loads(re.search(r"^CMD (\[.*\])$", DOCKERFILE, re.M).group(1))
    assert command[:3] == ["python3", "-m", "runtime.server"]
    assert re.search(r"^ENV TRITON_SERVER_ROOT=/opt/tritonserver$", DOCKERFILE, re.M)
    assert "ADMIN_KEY" not in re.findall(r"^ENV (\w+)=", DOCKERFILE, re.M)  # no key ships in the image
