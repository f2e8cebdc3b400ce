"""The launcher behind every deployment as a service: its keys, a dead or
hung stub brought back by the watchdog (with the requests lost measured), a
reload that fails retried, reloads under traffic, a publish picked up by
polling, and the drain on SIGTERM with ocr, ocr_bls and a Stable Diffusion
stream in flight after stubs died and were recovered. One launcher on a small
repository serves the whole module (the SIGTERM test, last, stops it)."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from lifecycle import DATATYPES, OCR, ORIENTATION, SD_STREAM, Launcher, Traffic, fault_figures, probe_copy, small_repository, stuck_model
from triton_helpers import wait_until
from tritonclient.utils import InferenceServerException

from clients.common import make_inputs
from runtime.server import served_preload
from runtime.watchdog import server_stubs
from testsets.entries import entries

FRAGILE_BOUND_S = 3
STREAM_STEPS = 30


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("lifecycle")
    repo = small_repository(base / "repo", ORIENTATION + DATATYPES + OCR + SD_STREAM)
    stuck_model(repo, "stuck", FRAGILE_BOUND_S)
    probe_copy(repo, "fragile", 0.0)
    env = {"ADMIN_KEY": "", "ADMIN_KEY_FILE": str(base / "secret" / "admin-key"), "STATS_KEY": "", "STATS_KEY_FILE": str(base / "secret" / "stats-key")}
    launcher = Launcher(repo, env=env, args=["--drain-grace-secs", "120"])
    launcher.wait_for("Ctrl-C stops the server", timeout=400)
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


# --- keys (the APIs they lock: tests/test_deployments.py) -------------------------------


def test_generated_keys_are_private_and_their_files_printed(served):
    for name in ("admin-key", "stats-key"):
        path = served.key_file.parent / name
        assert f"key in {path} (mode 0600)" in served.output
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert len(path.read_text().strip()) >= 32
    assert served.key != (served.key_file.parent / "stats-key").read_text().strip()


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


def assert_replaced(served, model: str, old_pid: int) -> None:
    """The model runs on a new stub and the old one is gone (it exits in the background)."""

    def stubs() -> set[int]:
        return {s.pid for s in server_stubs(served.server_pid(), {}) if s.model == model}

    wait_until(lambda: (pids := stubs()) and old_pid not in pids, 60, lambda: f"{model} still on stub {old_pid}: {stubs()}")


# --- a dead or hung stub comes back ---------------------------------------------------------


def fault_under_traffic(served, victim: str, model: str, sig: signal.Signals, workers: int = 2) -> dict:
    """`sig` (SIGKILL: a dead stub; SIGSTOP: a hung one) to the stub of
    `victim` while `model` gets traffic; checks that failures stay inside the
    recovery window and returns the figures, requests lost included."""
    others = {s.pid for s in server_stubs(served.server_pid(), {}) if s.model != victim}
    with Traffic(served.grpc_url, model, workers=workers) as traffic:
        traffic.wait_answers(10)
        pid = served.stub_pid(victim)
        start_line = len(served.lines)
        faulted = time.monotonic()
        os.kill(pid, sig)
        served.wait_for(f"model '{victim}' reloaded in", timeout=120, start=start_line)
        recovered = time.monotonic()
        traffic.wait_answers(20)
    figures = fault_figures(traffic.outcomes, faulted, recovered)
    late_failures = [o for o in traffic.failures if o.sent > recovered]
    assert not [o for o in traffic.failures if o.done < faulted]
    assert not late_failures, f"{len(late_failures)} requests failed after the reload: {late_failures[:3]}\n{served.output[-3000:]}"
    assert all("is not healthy" in o.error for o in traffic.failures), {o.error for o in traffic.failures}
    assert_replaced(served, victim, pid)
    # nothing else was reloaded: no other model has a new stub
    assert {s.pid for s in server_stubs(served.server_pid(), {}) if s.model != victim} <= others
    print(f"\n{sig.name} of {victim} under {workers} clients of {model}: {figures}")
    return figures


def test_dead_onnx_stage_stub_is_reloaded_under_traffic(served):
    figures = fault_under_traffic(served, "orientation_classifier", "orientation", signal.SIGKILL)
    assert figures["seconds_to_reload"] < 30
    assert "stub of model 'orientation_classifier' died" in served.output


def test_dead_bls_model_stub_is_reloaded_under_traffic(served):
    figures = fault_under_traffic(served, "bls_probe", "bls_probe", signal.SIGKILL)
    assert figures["seconds_to_reload"] < 30


def test_stopped_stub_is_killed_and_reloaded_under_traffic(served):
    """kill -STOP: Triton fails the requests sent to the stopped instance
    after about a second each ("not healthy"); the watchdog sees the stopped
    state on two polls, kills the stub and reloads its model."""
    figures = fault_under_traffic(served, "datatypes_model1", "datatypes", signal.SIGSTOP)
    assert figures["seconds_to_reload"] < 30
    assert "stub of model 'datatypes_model1' stopped" in served.output


def test_request_stuck_in_a_model_fails_with_a_timeout_error_and_the_model_comes_back(served):
    """`stuck` sleeps as many seconds as its input asks: 1000 is a hang. Past
    its execution bound (3 s, its config's execution_bound_s) the watchdog
    interrupts it: the client gets a timeout error naming the bound at once,
    not a hang, and the model is reloaded."""
    client = grpcclient.InferenceServerClient(served.grpc_url)
    start_line = len(served.lines)
    try:
        started = time.monotonic()
        with pytest.raises(InferenceServerException) as failed:
            client.infer("stuck", make_inputs(grpcclient, {"x": np.full((1, 3), 1000.0, np.float32)}), client_timeout=120)
        seconds = time.monotonic() - started
        assert f"execution bound of {FRAGILE_BOUND_S} s exceeded" in str(failed.value), failed.value
        assert FRAGILE_BOUND_S <= seconds < FRAGILE_BOUND_S + 5, seconds
        served.wait_for("model 'stuck' reloaded in", timeout=60, start=start_line)
        x = np.full((1, 3), 2.0, np.float32)
        np.testing.assert_array_equal(client.infer("stuck", make_inputs(grpcclient, {"x": x})).as_numpy("y"), x)
    finally:
        client.close()
    assert "stub of model 'stuck' was interrupted at its execution bound" in served.output


def test_failed_reload_is_retried_with_backoff_and_reported(served):
    """`fragile`'s stub dies while its model.py is broken: each reload fails
    and is reported, with the pause before the next; once the file is fixed
    a retry brings the model back."""
    code = served.repo / "fragile" / "1" / "model.py"
    good = code.read_text()
    start_line = len(served.lines)
    code.write_text("raise RuntimeError('deliberately broken during a recovery')\n")
    try:
        os.kill(served.stub_pid("fragile"), signal.SIGKILL)
        served.wait_for("reloading model 'fragile' failed (attempt 2", timeout=60, start=start_line)
    finally:
        code.write_text(good)
    served.wait_for("model 'fragile' reloaded in", timeout=60, start=start_line)
    failures = [line for line in served.lines[start_line:] if "reloading model 'fragile' failed" in line]
    assert "retrying in 1 s" in failures[0] and "deliberately broken during a recovery" in failures[0], failures
    assert "retrying in 2 s" in failures[1], failures
    assert infer_identity(served.grpc_url, 4.0, model="fragile") == "1"


# --- reloads under traffic -----------------------------------------------------------------


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


def test_a_publish_is_picked_up_by_polling_without_a_failed_request(tmp_path):
    """--repository-poll-secs: a new version folder is loaded while the old
    one serves, and a new model folder is loaded, with the server in explicit
    mode (the watchdog keeps its model-control API)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    probe_copy(repo, "identity", 0.0)
    launcher = Launcher(repo, env={"ADMIN_KEY": "poll-test-key-0123456789"}, args=["--repository-poll-secs", "1"])
    try:
        launcher.wait_for("Ctrl-C stops the server")
        with Traffic(launcher.grpc_url, "identity") as traffic:
            traffic.wait_answers(20)
            shutil.copytree(repo / "identity" / "1", repo / "identity" / "2")
            launcher.wait_for("poll: 'identity' serves version 2", timeout=60)
            traffic.wait_answers(20)
        assert not traffic.failures, traffic.failures[:3]
        assert max(traffic.outcomes, key=lambda o: o.sent).version == "2"
        probe_copy(repo, "newcomer", 0.0)
        launcher.wait_for("poll: 'newcomer' serves version 1 (new model)", timeout=60)
        assert infer_identity(launcher.grpc_url, 1.0, model="newcomer") == "1"
        assert "watchdog" not in launcher.output
    finally:
        assert launcher.stop() == 0, launcher.output[-3000:]


# --- the drain on SIGTERM; stops the module's launcher, so it runs last ----------------------


def stream_request(steps: int) -> dict[str, np.ndarray]:
    return {
        "prompt": np.array([b"a lighthouse at dusk"], dtype=np.object_),
        "steps": np.array([steps], np.int32),
        "seed": np.array([3], np.int64),
    }


def send_until_refused(served, model: str, tensors: dict, timeout: float = 120.0) -> tuple[str, int]:
    """Send `model` requests one after another until one is refused; every
    one before must be answered. Returns (the refusal, answers before it)."""
    client = grpcclient.InferenceServerClient(served.grpc_url)
    answered, deadline = 0, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                client.infer(model, make_inputs(grpcclient, tensors), client_timeout=60)
                answered += 1
            except InferenceServerException as error:
                if error.status() == "StatusCode.NOT_FOUND" and retried_stand_in(served, model):
                    continue  # the moment Triton 2.51 dropped the first stand-in (runtime/drain.py)
                assert error.status() == "StatusCode.UNAVAILABLE", (error, [line for line in served.lines if "drain" in line])
                return error.message(), answered
            time.sleep(0.2)
    finally:
        client.close()
    raise AssertionError(f"'{model}' was still answering {timeout:.0f} s after SIGTERM")


def test_sigterm_drains_ensembles_bls_and_streams_in_flight_after_stub_recoveries(served):
    """Stubs died and were brought back above. ocr and ocr_bls requests and a
    Stable Diffusion stream are in flight when SIGTERM comes: every stage of
    each (and every streamed step) finishes, new requests are refused with
    'server is stopping' (gRPC UNAVAILABLE, HTTP 503), the launcher exits 0
    within its grace period and leaves no process, port or shared memory."""
    assert "watchdog: stub of model" in served.output, "run with the stub tests above: the drain follows recoveries"
    server_pid = served.server_pid()
    stubs = [s.pid for s in server_stubs(server_pid, {})]
    prefix = shm_prefix(server_pid)
    ocr = entries()["ocr"]
    client = grpcclient.InferenceServerClient(served.grpc_url)
    answers: queue.Queue = queue.Queue()
    for model in ("ocr", "ocr_bls", "ocr", "ocr_bls"):
        client.async_infer(model, make_inputs(grpcclient, ocr.good(0)), lambda result, error, model=model: answers.put((model, result, error)), client_timeout=300)
    streamed: queue.Queue = queue.Queue()
    stream = grpcclient.InferenceServerClient(served.grpc_url)
    stream.start_stream(callback=lambda result, error: streamed.put((result, error)))
    stream.async_stream_infer("stable_diffusion_stream", make_inputs(grpcclient, stream_request(steps=STREAM_STEPS)))
    first_step = streamed.get(timeout=120)
    assert first_step[1] is None, first_step[1]
    served.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    # both protocols at once: the server may exit a second after the last stand-in is in
    with ThreadPoolExecutor(2) as pool:
        over_grpc = pool.submit(send_until_refused, served, "datatypes", datatypes_tensors())
        over_http = pool.submit(refused_over_http, served, "datatypes", datatypes_tensors())
        (refusal, answered_meanwhile), over_http = over_grpc.result(), over_http.result()
    assert refusal.startswith("server is stopping"), refusal
    assert over_http.status() == "503" and over_http.message().startswith("server is stopping"), over_http
    finished = [answers.get(timeout=300) for _ in range(4)]
    steps = stream_until_picture(streamed)
    stream.stop_stream()
    stream.close()
    client.close()
    code = served.process.wait(120 + 10 + 60)
    stopped_after = time.monotonic() - signalled
    assert code == 0, served.output[-3000:]
    assert "draining: nothing in flight" in served.output
    ocr_loaded = "FAILED to load 'ocr" not in served.output  # the OCR models may be broken on their own (tests/test_ocr.py)
    for model, result, error in finished:
        assert error is None or not ocr_loaded, (model, error)
        assert error is None or not any(cut in str(error).lower() for cut in ("stopping", "unknown model")), (model, error)
        assert error is not None or result.as_numpy("texts") is not None, model
    assert all(error is None for _, error in steps), [str(e) for _, e in steps if e]
    assert {int(r.as_numpy("step")[0]) for r, _ in steps if r.as_numpy("step") is not None} >= set(range(2, STREAM_STEPS + 1))
    print(f"\ndrain: {answered_meanwhile} new requests answered before the stand-ins took over; stopped {stopped_after:.1f} s after SIGTERM")

    def alive() -> list[int]:
        return [pid for pid in [server_pid, *stubs] if os.path.exists(f"/proc/{pid}")]

    wait_until(lambda: not alive(), 30, lambda: f"still alive: {alive()}\n{served.output[-3000:]}")
    assert not list_shm(prefix)
    assert port_free(served.http_port) and port_free(served.grpc_port)


def retried_stand_in(served, model: str, wait_s: float = 10.0) -> bool:
    """Whether the drain logged (within `wait_s`) that it loaded `model`'s stand-in again."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if any(f"the stand-in of '{model}' was out-dated" in line for line in served.lines):
            return True
        time.sleep(0.1)
    return False


def refused_over_http(served, model: str, tensors: dict, timeout: float = 120.0) -> InferenceServerException:
    """The first refusal of `model` over HTTP (requests before it are answered)."""
    client = httpclient.InferenceServerClient(served.http_url, network_timeout=120)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                client.infer(model, make_inputs(httpclient, tensors))
            except InferenceServerException as error:
                if "unknown model" in str(error.message()).lower() and retried_stand_in(served, model):
                    continue  # as in send_until_refused
                return error
            time.sleep(0.2)
    finally:
        client.close()
    raise AssertionError(f"'{model}' was still answering over HTTP {timeout:.0f} s after SIGTERM")


def stream_until_picture(streamed: queue.Queue, timeout: float = 300.0) -> list:
    """The responses of a stream up to the one with the picture (or an error)."""
    responses, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        result, error = streamed.get(timeout=max(0.1, deadline - time.monotonic()))
        responses.append((result, error))
        if error is not None or result.as_numpy("generated_image") is not None:
            return responses
    raise AssertionError(f"no picture within {timeout:.0f} s: {len(responses)} responses")


def datatypes_tensors() -> dict[str, np.ndarray]:
    return entries()["datatypes"].good(0)


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
