"""The launcher: backend directory assembly, readable start-up failures, and
`python -m runtime.server` (what `make serve` runs) on given ports."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from runtime.paths import MODEL_REPOSITORY
from runtime.distribution import assemble_backend_dir
from runtime.server import (
    ServerStartError,
    TritonServer,
    error_lines,
    free_port,
)


def test_backend_dir_has_python_backend_stub_and_onnxruntime(tmp_path):
    dest = assemble_backend_dir(tmp_path / "backends")
    assert (dest / "python" / "libtriton_python.so").exists()
    assert os.access(dest / "python" / "triton_python_backend_stub", os.X_OK)
    assert (dest / "onnxruntime" / "model.py").exists()


def test_error_lines_pick_the_failure():
    log = "I1123 ok\nE1123 03:00:00.1 1 model_lifecycle.cc:654] failed to load 'x': boom\nI1123 more\n"
    assert error_lines(log) == ["E1123 03:00:00.1 1 model_lifecycle.cc:654] failed to load 'x': boom"]


def test_broken_model_fails_start_with_its_error(tmp_path):
    broken = tmp_path / "repo" / "broken_model"
    (broken / "1").mkdir(parents=True)
    (broken / "config.pbtxt").write_text(
        'name: "broken_model"\nbackend: "python"\nmax_batch_size: 0\n'
        'input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] } ]\noutput [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
    )
    (broken / "1" / "model.py").write_text("raise RuntimeError('deliberately broken model')\n")
    server = TritonServer(repositories=[tmp_path / "repo"])
    with pytest.raises(ServerStartError) as failure:
        server.start(timeout=120)
    message = str(failure.value)
    assert "deliberately broken model" in message
    assert str(server.log_path) in message
    assert server.process.poll() is not None


def test_serve_command_on_given_ports_lists_models_and_stops_on_ctrl_c(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(MODEL_REPOSITORY / "datatypes_onnx", repo / "datatypes_onnx")
    http, grpc, metrics = free_port(), free_port(), free_port()
    env = dict(os.environ, HTTP_PORT=str(http), GRPC_PORT=str(grpc), METRICS_PORT=str(metrics))
    process = subprocess.Popen(
        [sys.executable, "-m", "runtime.server", "--model-repository", str(repo)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if "Ctrl-C stops the server" in line or not line:
                break
        output = "".join(lines)
        assert f"http://localhost:{http}" in output and f"localhost:{grpc}" in output, output
        assert "datatypes_onnx" in output and "READY" in output, output
        with urllib.request.urlopen(f"http://localhost:{http}/v2/health/ready", timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"http://localhost:{metrics}/metrics", timeout=5) as response:
            assert b"nv_inference_count" in response.read()
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    assert "tritonserver stopped" in rest


def test_procfs_reads_a_child_and_forgets_it_once_gone():
    from runtime import procfs

    child = subprocess.Popen(["sleep", "30"])
    try:
        assert procfs.children(os.getpid(), "sleep")[child.pid].name == "sleep"
        assert child.pid not in procfs.children(os.getpid(), "tritonserver")
        found = procfs.stat(child.pid)
        assert (found.name, found.ppid) == ("sleep", os.getpid()) and found.state in "RSD"
        assert procfs.cmdline(child.pid) == ["sleep", "30"]
        assert procfs.cpu_seconds(os.getpid()) > 0
    finally:
        child.kill()
    child.wait()
    assert procfs.stat(child.pid) is None and procfs.cmdline(child.pid) is None and procfs.cpu_seconds(child.pid) is None


def test_watchdog_names_a_stub_that_dies_before_its_first_poll(tmp_path):
    """A dead stub is a zombie without a command line: the watchdog must have
    read the stubs' identities when it started, not at its first poll."""
    from runtime import procfs
    from runtime.watchdog import STUB_BINARY, StubWatchdog

    # a stand-in stub: a Python running <repo>/<model>/1/model.py with the stub's arguments
    stub = tmp_path / STUB_BINARY
    stub.symlink_to(sys.executable)
    model_file = tmp_path / "repo" / "fake_model" / "1" / "model.py"
    model_file.parent.mkdir(parents=True)
    model_file.write_text("import time\ntime.sleep(60)\n")
    child = subprocess.Popen([str(stub), str(model_file), "region", "1", "1", str(os.getpid()), "dir", "0", "fake_model_0_0"])
    try:
        deadline = time.monotonic() + 10
        while (procfs.cmdline(child.pid) or [None])[0] != str(stub):
            assert time.monotonic() < deadline, "the stand-in stub did not start"
            time.sleep(0.05)
        lines: list[str] = []
        watchdog = StubWatchdog(os.getpid(), f"localhost:{free_port()}", None, log=lines.append, interval=0.1)
        watchdog.start()
        child.kill()  # before the first poll (0.1 s after start)
        deadline = time.monotonic() + 10
        while not (watchdog.recoveries and watchdog.recoveries[0].attempts) and time.monotonic() < deadline:
            time.sleep(0.05)
        watchdog.stop()
    finally:
        child.kill()
        child.wait()
    assert lines and "stub of model 'fake_model' died (fake_model_0_0" in lines[0], lines
    # nothing listens there: the reload is reported as failed, not hung
    assert watchdog.recoveries and watchdog.recoveries[0].model == "fake_model" and not watchdog.recoveries[0].ok
    assert "reloading model 'fake_model' failed (attempt 1" in "\n".join(lines) and "retrying in 1 s" in "\n".join(lines)


def test_server_stubs_finds_a_stub_whose_server_has_exited(tmp_path):
    """One listing serves the watchdog, the launcher's clean-up and the soak:
    a stub outliving its server (reparented) is still found by that server's pid."""
    from runtime.watchdog import STUB_BINARY, server_stubs

    stub = tmp_path / STUB_BINARY
    stub.symlink_to(sys.executable)
    model_file = tmp_path / "repo" / "orphan_model" / "1" / "model.py"
    model_file.parent.mkdir(parents=True)
    model_file.write_text("import time\ntime.sleep(60)\n")
    # a stand-in server: starts the stand-in stub with its own pid as the parent argument, then exits
    launch = (
        "import os, subprocess, sys; "
        "child = subprocess.Popen([sys.argv[1], sys.argv[2], 'triton_region', '1', '1', str(os.getpid()), 'dir', '0', 'orphan_model_0_0'], "
        "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        "print(os.getpid(), child.pid)"
    )
    done = subprocess.run([sys.executable, "-c", launch, str(stub), str(model_file)], capture_output=True, text=True, check=True, timeout=30)
    server_pid, stub_pid = (int(word) for word in done.stdout.split())
    try:
        deadline = time.monotonic() + 10
        while not (found := server_stubs(server_pid)):
            assert time.monotonic() < deadline, "the orphaned stand-in stub was not found"
            time.sleep(0.05)
        assert [(s.pid, s.model, s.instance, s.zombie, s.region) for s in found] == [(stub_pid, "orphan_model", "orphan_model_0_0", False, "triton_region")]
        assert server_stubs(os.getpid()) == []  # not a stub of this process
    finally:
        os.kill(stub_pid, signal.SIGKILL)
