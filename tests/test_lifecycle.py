"""The launcher behind `make serve` as a service: admin APIs behind a key, a
dead stub brought back by the watchdog, reloads under traffic, a clean
shutdown with requests in flight. One launcher on a small repository serves
the whole module (the SIGTERM test, last, stops it)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from lifecycle import DATATYPES, ORIENTATION, Launcher, Traffic, small_repository
from triton_helpers import wait_until

from clients.common import make_inputs
from runtime.server import GRPC_ADMIN_HEADER, served_preload
from runtime.watchdog import server_stubs



@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("lifecycle")
    repo = small_repository(base / "repo", ORIENTATION + DATATYPES)
    launcher = Launcher(repo, env={"ADMIN_KEY": "", "ADMIN_KEY_FILE": str(base / "secret" / "admin-key")})
    launcher.wait_for("Ctrl-C stops the server")
    launcher.repo = repo
    launcher.key_file = base / "secret" / "admin-key"
    launcher.key = launcher.key_file.read_text().strip()
    yield launcher
    launcher.stop()


def infer_identity(url: str, value: float, model: str = "identity"):
    client = grpcclient.InferenceServerClient(url)
    try:
        x = np.full((1, 3), value, dtype=np.float32)
        result = client.infer(model, make_inputs(grpcclient, {"x": x}), client_timeout=60)
        np.testing.assert_array_equal(result.as_numpy("y"), x)
        return result.get_response().model_version
    finally:
        client.close()


def load(served, model: str) -> None:
    status, body = served.admin(f"/v2/repository/models/{model}/load", served.key)
    assert status == 200, body


# --- admin APIs (item 6) --------------------------------------------------------------


def test_generated_admin_key_is_private_and_its_file_printed(served):
    assert f"key in {served.key_file} (mode 0600)" in served.output
    assert stat.S_IMODE(served.key_file.stat().st_mode) == 0o600
    assert len(served.key) >= 32


def test_server_and_stubs_run_with_the_malloc_of_ALLOCATOR(served):
    # make test exports ALLOCATOR as make serve does (jemalloc unless set)
    preload = served_preload()
    pids = [served.server_pid()] + [s.pid for s in server_stubs(served.server_pid(), {}) if not s.zombie]
    assert len(pids) > 1
    for pid in pids:
        maps = Path(f"/proc/{pid}/maps").read_text()
        if preload:
            assert Path(preload).name in maps, f"process {pid} does not map {preload}"
        else:
            assert "libjemalloc" not in maps


def test_admin_apis_need_the_key_over_http(served):
    for path in ("/v2/repository/index", "/v2/repository/models/identity/unload", "/v2/repository/models/identity/load"):
        for key in (None, "wrong-key"):
            status, body = served.admin(path, key)
            assert status == 403 and "admin-key" in body, (path, key, status, body)
    assert infer_identity(served.grpc_url, 1) == "1"  # the refused unload did nothing
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://{served.http_url}/v2/models/identity/config", timeout=10)
    assert refused.value.code == 403
    for path in ("/v2/health/ready", "/v2/models/identity", "/v2/models/identity/stats"):  # stays open
        with urllib.request.urlopen(f"http://{served.http_url}{path}", timeout=10) as response:
            assert response.status == 200, path


def test_admin_apis_need_the_key_over_grpc_and_work_with_it(served):
    client = grpcclient.InferenceServerClient(served.grpc_url)
    try:
        with pytest.raises(Exception, match="admin-key"):
            client.unload_model("identity")
        with pytest.raises(Exception, match="admin-key"):
            client.get_model_config("identity")
        assert client.is_model_ready("identity")
        headers = {GRPC_ADMIN_HEADER: served.key}
        client.unload_model("identity", headers=headers)
        deadline = time.monotonic() + 60
        while client.is_model_ready("identity") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not client.is_model_ready("identity")
        with pytest.raises(Exception):
            infer_identity(served.grpc_url, 2)
        client.load_model("identity", headers=headers)
        assert client.get_model_config("identity", headers=headers).config.name == "identity"
    finally:
        client.close()
    assert infer_identity(served.grpc_url, 3) == "1"


def assert_replaced(served, model: str, old_pid: int) -> None:
    """The model runs on a new stub and the old one is gone (it exits in the background)."""

    def stubs() -> set[int]:
        return {s.pid for s in server_stubs(served.server_pid(), {}) if s.model == model}

    wait_until(lambda: (pids := stubs()) and old_pid not in pids, 60, lambda: f"{model} still on stub {old_pid}: {stubs()}")


# --- a dead stub comes back (item 2) ------------------------------------------------------


def kill_stub_under_traffic(served, victim: str, model: str, workers: int = 2) -> dict:
    """kill -9 the stub of `victim` while `model` gets traffic; returns the
    figures and checks that failures stay inside the recovery window."""
    others = {s.pid for s in server_stubs(served.server_pid(), {}) if s.model != victim}
    with Traffic(served.grpc_url, model, workers=workers) as traffic:
        traffic.wait_answers(10)
        pid = served.stub_pid(victim)
        start_line = len(served.lines)
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        served.wait_for(f"model '{victim}' reloaded in", timeout=120, start=start_line)
        recovered = time.monotonic()
        traffic.wait_answers(20)
    late_failures = [o for o in traffic.failures if o.sent > recovered]
    early_failures = [o for o in traffic.failures if o.done < killed]
    assert not early_failures, early_failures[:3]
    assert not late_failures, f"{len(late_failures)} requests failed after the reload: {late_failures[:3]}\n{served.output[-3000:]}"
    first_ok = min(o.done for o in traffic.outcomes if o.sent >= killed and not o.error)
    assert_replaced(served, victim, pid)
    # nothing else was reloaded: no other model has a new stub
    assert {s.pid for s in server_stubs(served.server_pid(), {}) if s.model != victim} <= others
    figures = {
        "victim": victim,
        "traffic_on": model,
        "requests": len(traffic.outcomes),
        "failed": len(traffic.failures),
        "seconds_to_first_answer_after_kill": round(first_ok - killed, 2),
        "seconds_to_reload_logged": round(recovered - killed, 2),
    }
    print("recovery:", figures)
    return figures


def test_dead_onnx_stage_stub_is_reloaded_under_traffic(served):
    figures = kill_stub_under_traffic(served, "orientation_classifier", "orientation")
    assert figures["seconds_to_reload_logged"] < 30
    assert "stub of model 'orientation_classifier' died" in served.output


def test_dead_bls_model_stub_is_reloaded_under_traffic(served):
    figures = kill_stub_under_traffic(served, "bls_probe", "bls_probe")
    assert figures["seconds_to_reload_logged"] < 30


# --- reloads under traffic (item 3) -----------------------------------------------------


def test_new_version_folder_is_served_without_a_failed_request(served):
    shutil.copytree(served.repo / "identity" / "1", served.repo / "identity" / "2")
    with Traffic(served.grpc_url, "identity") as traffic:
        traffic.wait_answers(20)
        load(served, "identity")
        traffic.wait_answers(20)
    assert not traffic.failures, traffic.failures[:3]
    # the last request sent (two workers: the last one answered may have been sent before the load)
    assert max(traffic.outcomes, key=lambda o: o.sent).version == "2"
    assert {o.version for o in traffic.outcomes} == {"1", "2"}


def test_instance_count_change_without_a_failed_request(served):
    config = served.repo / "identity" / "config.pbtxt"
    config.write_text(config.read_text().replace("count: 1 kind", "count: 2 kind"))
    with Traffic(served.grpc_url, "identity") as traffic:
        traffic.wait_answers(20)
        load(served, "identity")
        traffic.wait_answers(20)
    assert not traffic.failures, traffic.failures[:3]

    def identity_stubs() -> int:
        return len([s for s in server_stubs(served.server_pid(), {}) if s.model == "identity"])

    # the replaced instances' stubs exit in the background
    wait_until(lambda: identity_stubs() == 2, 60, lambda: f"{identity_stubs()} identity stubs, not 2")


def test_ensemble_stage_reload_without_a_failed_request(served):
    before = served.stub_pid("datatypes_model1")
    code = served.repo / "datatypes_model1" / "1" / "model.py"  # a new deployment of the stage's code
    code.write_text(code.read_text() + "# redeployed\n")
    with Traffic(served.grpc_url, "datatypes") as traffic:
        traffic.wait_answers(20)
        load(served, "datatypes_model1")
        traffic.wait_answers(20)
    assert not traffic.failures, traffic.failures[:3]
    assert_replaced(served, "datatypes_model1", before)


# case -> (model, traffic on, new version folder, its files (None: copied from version 1), broken config or None, message)
BROKEN_VERSIONS = {
    "initialize raising": ("identity", "identity", "3", {"model.py": "raise RuntimeError('deliberately broken new version')\n"}, None, "deliberately broken new version"),
    # Triton answers 500 "failed to poll from model repository"; the parse error is in its log
    "bad config": ("identity", "identity", "3", {"model.py": None}, "name: identity\nmax_batch_size: [oops\n", "failed to load 'identity'"),
    # (a Python model version without model.py hangs Triton 2.51's load: its stub fails to
    # pre-initialize and the load never returns; an ONNX stage without its file fails cleanly)
    "missing model file": ("orientation_classifier", "orientation", "2", {}, None, "model.onnx not found"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_VERSIONS))
def test_broken_new_version_is_refused_and_the_old_keeps_serving(served, case):
    model, entry, version, files, config_text, message = BROKEN_VERSIONS[case]
    folder = served.repo / model / version
    folder.mkdir()
    config = served.repo / model / "config.pbtxt"
    good_config = config.read_text()
    for name, text in files.items():
        if text is None:
            shutil.copy(served.repo / model / "1" / name, folder / name)
        else:
            (folder / name).write_text(text)
    if config_text:
        config.write_text(config_text)
    try:
        with Traffic(served.grpc_url, entry) as traffic:
            traffic.wait_answers(10)
            served_versions = {o.version for o in traffic.outcomes}
            status, body = served.admin(f"/v2/repository/models/{model}/load", served.key)
            traffic.wait_answers(10)
    finally:
        shutil.rmtree(folder)
        config.write_text(good_config)
    # Triton keeps the refused version as a live UNAVAILABLE one, which holds its
    # shutdown until --exit-timeout-secs (exit 1): loading the fixed model drops it.
    load(served, model)
    assert status in (400, 500) and message in body, (status, body)
    assert not traffic.failures, traffic.failures[:3]
    assert {o.version for o in traffic.outcomes} == served_versions  # still the old version


def test_unload_lets_requests_in_flight_finish(served):
    client = grpcclient.InferenceServerClient(served.grpc_url)
    answers = []
    try:
        sent = [np.full((1, 3), i, dtype=np.float32) for i in range(6)]
        for x in sent:  # `slow` takes 1 s per execute of 2: about 3 s of work queued
            client.async_infer("slow", make_inputs(grpcclient, {"x": x}), lambda result, error: answers.append((result, error)))
        time.sleep(0.3)
        status, body = served.admin("/v2/repository/models/slow/unload", served.key)
        assert status == 200, body
        deadline = time.monotonic() + 60
        while len(answers) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(answers) == len(sent)
        assert all(error is None for _, error in answers), [str(e) for _, e in answers if e]
        assert sorted(float(r.as_numpy("y")[0, 0]) for r, _ in answers) == list(range(6))
        with pytest.raises(Exception, match="no available versions"):
            infer_identity(served.grpc_url, 1, model="slow")
    finally:
        client.close()
    load(served, "slow")


# --- shutdown (item 4); stops the module's launcher, so it runs last -------------------------


def test_sigterm_answers_requests_in_flight_refuses_new_ones_and_cleans_up(served):
    server_pid = served.server_pid()
    stubs = [s.pid for s in server_stubs(server_pid, {})]
    prefix = shm_prefix(server_pid)
    assert stubs and list_shm(prefix), "the server should have stubs and shared memory while it runs"
    client = grpcclient.InferenceServerClient(served.grpc_url)
    answers = []
    sent = [np.full((1, 3), i, dtype=np.float32) for i in range(6)]
    for x in sent:
        client.async_infer("slow", make_inputs(grpcclient, {"x": x}), lambda result, error: answers.append((result, error)))
    time.sleep(0.3)
    served.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    with pytest.raises(Exception):
        infer_identity(served.grpc_url, 1)
    code = served.process.wait(60)
    client.close()
    assert code == 0, served.output[-3000:]
    # the stub kills above leave versions Triton never finishes unloading: said, not hidden
    assert "the exit timeout expired on model versions whose stub had died" in served.output
    # the watchdog acted on the two kills only, never on a stub replaced by a reload or unload
    assert sum("watchdog: stub of model" in line for line in served.lines) == 2, served.output
    assert len(answers) == len(sent) and all(error is None for _, error in answers), [str(e) for _, e in answers if e]
    assert sorted(float(r.as_numpy("y")[0, 0]) for r, _ in answers) == list(range(6))
    # a stub killed above stays a zombie until tritonserver exits, then init reaps it

    def alive() -> list[int]:
        return [pid for pid in [server_pid, *stubs] if os.path.exists(f"/proc/{pid}")]

    wait_until(lambda: not alive(), 30, lambda: f"still alive: {alive()}\n{served.output[-3000:]}")
    assert not list_shm(prefix)
    assert port_free(served.http_port) and port_free(served.grpc_port)


def shm_prefix(server_pid: int) -> str:
    argv = open(f"/proc/{server_pid}/cmdline", "rb").read().decode().split("\0")
    flag = next(a for a in argv if a.startswith("--backend-config=python,shm-region-prefix-name="))
    return flag.split("=", 2)[2].rsplit("python_", 1)[0]


def list_shm(prefix: str) -> list[str]:
    return sorted(name for name in os.listdir("/dev/shm") if name.startswith(prefix))


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


def test_broken_model_reported_rest_serves_and_sigkilled_launcher_takes_the_server_along(tmp_path):
    """`make serve` runs with --exit-on-error=false: a model whose initialize
    raises is reported with Triton's reason (the traceback is in the log) and
    the others serve. SIGKILL of the launcher: the parent-death signal stops
    tritonserver, its stubs exit, no shared memory and no port is left."""
    repo = small_repository(tmp_path / "repo")
    broken = repo / "broken_init"
    shutil.copytree(repo / "identity", broken)
    config = broken / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "identity"', 'name: "broken_init"'))
    (broken / "1" / "model.py").write_text("raise RuntimeError('deliberately broken initialize')\n")
    launcher = Launcher(repo, env={"ADMIN_KEY": "a-key-from-the-environment"})
    try:
        launcher.wait_for("Ctrl-C stops the server")
        output = launcher.output
        assert "FAILED to load 'broken_init'" in output and "deliberately broken initialize" in output, output
        assert "key from $ADMIN_KEY" in output
        log_path = output.split("(log: ", 1)[1].split(")", 1)[0]
        assert "Traceback" in open(log_path).read() or "At:" in open(log_path).read()
        assert infer_identity(launcher.grpc_url, 5) == "1"
        assert "watchdog:" not in launcher.output  # a model that failed to load is no dead stub
        server_pid = launcher.server_pid()
        stubs = [s.pid for s in server_stubs(server_pid, {})]
        prefix = shm_prefix(server_pid)
        assert stubs and list_shm(prefix)
        launcher.process.kill()
        launcher.process.wait(10)
        deadline = time.monotonic() + 60
        while any(os.path.exists(f"/proc/{pid}") for pid in [server_pid, *stubs]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(os.path.exists(f"/proc/{pid}") for pid in [server_pid, *stubs]), "tritonserver or a stub outlived the launcher"
        assert not list_shm(prefix)
        assert port_free(launcher.http_port) and port_free(launcher.grpc_port)
    finally:
        launcher.stop()
