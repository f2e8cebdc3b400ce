"""Start a real tritonserver on the model repository, wait for it, stop it.

Used by `make serve` (foreground, `python -m tools.runtime.server`) and by
the test suite (one server per test session)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tools.object_storage import StorageError, check_access, is_remote
from tools.paths import MODEL_REPOSITORY
from tools.runtime.distribution import assemble_backend_dir, assemble_lib_dir, find_distribution, server_environment


class ServerStartError(RuntimeError):
    pass


SERVING_PACKAGE_MISSING = (
    "the Python models of a remote repository ({repository}) import the serving package `pipelines` "
    "from the server's environment, and `{python}` cannot import it: install it there "
    "(`pip install .` from a checkout, as docker/Dockerfile does), or serve from a checkout's venv (make serve)"
)


def check_serving_package(env: dict[str, str], repository: str) -> None:
    """A local repository's models find `pipelines` through the checkout on the
    venv's path; a remote one is copied to a temporary folder by the server, so
    only an installed package can serve it. Checked with the python3 the stubs
    will run (the first on the server's PATH)."""
    python = shutil.which("python3", path=env.get("PATH")) or "python3"
    # run outside the checkout: from its root `import pipelines` would always work
    probe = subprocess.run([python, "-c", "import pipelines.serving.python_model"], env=env, cwd="/", capture_output=True, text=True)
    if probe.returncode != 0:
        raise ServerStartError(SERVING_PACKAGE_MISSING.format(repository=repository, python=python))


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free port never handed out before by this process: the kernel may
    offer a just-released port again, and two flags of one server on the same
    port fail its start ("cannot listen to GRPC requests and metrics requests
    at the same address")."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def _get_json(url: str, timeout: float = 2.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body = response.read()
        return response.status, (json.loads(body) if body else None)


def _post_json(url: str, payload: dict, timeout: float = 5.0):
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def error_lines(log_text: str, limit: int = 40) -> list[str]:
    """Lines of a tritonserver log that explain a failure (glog 'E' lines and
    model load failures)."""
    picked = []
    for line in log_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("E") and len(stripped) > 5 and stripped[1:5].isdigit():
            picked.append(stripped)
        elif "UNAVAILABLE" in stripped or "failed to load" in stripped or "Traceback" in stripped:
            picked.append(stripped)
    return picked[-limit:]


class TritonServer:
    """A tritonserver process on the given (or free) ports."""

    def __init__(
        self,
        repositories: list[Path | str] | None = None,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        log_path: Path | None = None,
        extra_args: list[str] | None = None,
        log_verbose: int = 0,
        poll_secs: int | None = None,
    ):
        # remote URLs stay strings (pathlib would make s3:// into s3:/)
        self.repositories = [r if is_remote(r) else Path(r) for r in (repositories or [MODEL_REPOSITORY])]
        self.poll_secs = poll_secs
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self.metrics_port = metrics_port or free_port()
        if log_path is None:
            handle, name = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
            os.close(handle)
            log_path = Path(name)
        self.log_path = Path(log_path)
        self.extra_args = extra_args or []
        self.log_verbose = log_verbose
        self.process: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"localhost:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"localhost:{self.grpc_port}"

    def command(self, backend_dir: Path, server_binary: Path) -> list[str]:
        cmd = [str(server_binary)]
        for repository in self.repositories:
            cmd.append(f"--model-repository={repository}")
        cmd += [
            f"--backend-directory={backend_dir}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true",
            f"--log-verbose={self.log_verbose}",
            # fail start-up when any model fails to load: a broken repository is
            # a red test run, not a partly working server
            "--exit-on-error=true",
            "--strict-readiness=true",
            "--exit-timeout-secs=10",
        ]
        if self.poll_secs:
            # the server re-reads the repository (local or remote) and loads
            # what changed; a new version is loaded before the old is unloaded
            cmd += ["--model-control-mode=poll", f"--repository-poll-secs={self.poll_secs}"]
        return cmd + self.extra_args

    def start(self, timeout: float = 180.0, stream_log: bool = False) -> "TritonServer":
        dist = find_distribution()
        backend_dir = assemble_backend_dir(dist=dist)
        assemble_lib_dir(dist=dist)
        env = server_environment(dist)
        for repository in self.repositories:
            if is_remote(repository):
                check_serving_package(env, repository)
                try:
                    check_access(repository)
                except StorageError as error:
                    raise ServerStartError(str(error)) from error
        cmd = self.command(backend_dir, dist.server_binary)
        log_file = None if stream_log else open(self.log_path, "w")
        self.process = subprocess.Popen(
            cmd,
            env=env,
            stdout=log_file if log_file else None,
            stderr=subprocess.STDOUT if log_file else None,
            start_new_session=not stream_log,
        )
        if log_file:
            log_file.close()
        self.wait_ready(timeout)
        return self

    def is_ready(self) -> bool:
        try:
            status, _ = _get_json(f"http://{self.http_url}/v2/health/ready", timeout=1.0)
            return status == 200
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerStartError(self._failure(f"tritonserver exited with code {self.process.returncode}"))
            if self.is_ready():
                return
            time.sleep(0.25)
        self.stop()
        raise ServerStartError(self._failure(f"tritonserver not ready after {timeout:.0f} s"))

    def _failure(self, headline: str) -> str:
        try:
            log_text = self.log_path.read_text(errors="replace")
        except OSError:
            log_text = ""
        lines = error_lines(log_text) or log_text.splitlines()[-30:]
        return "\n".join([headline, f"log: {self.log_path}", *("  " + line for line in lines)])

    def model_states(self) -> list[dict]:
        return _post_json(f"http://{self.http_url}/v2/repository/index", {}) or []

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            try:  # the server and its python stubs share one process group
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.process.kill()
            self.process.wait()

    def __enter__(self) -> "TritonServer":
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def _follow_log(server: TritonServer) -> None:
    """Echo the server log while it runs, so the foreground shows what it says."""
    with open(server.log_path, errors="replace") as log:
        log.seek(0, os.SEEK_END)
        while server.process.poll() is None:
            line = log.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.2)


def _port_arg(value: str | None, env_name: str, default: int) -> int:
    if value:
        return int(value)
    return int(os.environ.get(env_name) or default)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run tritonserver on the model repository in the foreground")
    parser.add_argument(
        "--model-repository",
        action="append",
        help="local folder or s3:// gs:// as:// URL, repeatable; default $MODEL_REPOSITORY or model_repository/",
    )
    parser.add_argument(
        "--repository-poll-secs",
        type=int,
        help="poll the repository every N seconds and load what changed (model control mode poll); default $REPOSITORY_POLL_SECS",
    )
    parser.add_argument("--http-port", help="default $HTTP_PORT or 8000")
    parser.add_argument("--grpc-port", help="default $GRPC_PORT or 8001")
    parser.add_argument("--metrics-port", help="default $METRICS_PORT or 8002")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for readiness")
    parser.add_argument("--log-verbose", type=int, default=0)
    parser.add_argument(
        "--model-config-name",
        help="serve <model>/configs/NAME.pbtxt where a model has one (e.g. tensorrt); default $MODEL_CONFIG_NAME",
    )
    args = parser.parse_args(argv)
    config_name = args.model_config_name or os.environ.get("MODEL_CONFIG_NAME")

    repositories = args.model_repository or [r for r in os.environ.get("MODEL_REPOSITORY", "").split(",") if r] or None
    poll_secs = args.repository_poll_secs or int(os.environ.get("REPOSITORY_POLL_SECS") or 0) or None
    server = TritonServer(
        repositories=repositories,
        poll_secs=poll_secs,
        http_port=_port_arg(args.http_port, "HTTP_PORT", 8000),
        grpc_port=_port_arg(args.grpc_port, "GRPC_PORT", 8001),
        metrics_port=_port_arg(args.metrics_port, "METRICS_PORT", 8002),
        log_verbose=args.log_verbose,
        extra_args=[f"--model-config-name={config_name}"] if config_name else None,
    )
    # SIGTERM (docker stop, kill) is handled like Ctrl-C: stop the server cleanly.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    where = ", ".join(str(r) for r in server.repositories) + (f", polled every {poll_secs} s" if poll_secs else "")
    print(f"starting tritonserver on {where} (log: {server.log_path})", flush=True)
    try:
        server.start(timeout=args.timeout)
    except ServerStartError as error:
        print(error, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        server.stop()
        return 130
    print(f"HTTP    http://localhost:{server.http_port}", flush=True)
    print(f"gRPC    localhost:{server.grpc_port}", flush=True)
    print(f"metrics http://localhost:{server.metrics_port}/metrics", flush=True)
    for model in sorted(server.model_states(), key=lambda m: m.get("name", "")):
        print(f"  {model.get('name'):32s} v{model.get('version', '-'):3s} {model.get('state', '?')}", flush=True)
    print("ready; Ctrl-C stops the server", flush=True)
    try:
        _follow_log(server)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan the server
        print("stopping tritonserver ...", flush=True)
        server.stop()
    code = server.process.returncode
    print(f"tritonserver stopped (exit code {code})", flush=True)
    return 0 if code in (0, -signal.SIGINT) else code


if __name__ == "__main__":
    sys.exit(main())
