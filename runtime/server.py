"""Start a real tritonserver on the model repository, wait for it, stop it.

`python -m runtime.server` is the launcher every shipped deployment runs
(`make serve`, docker/Dockerfile, deploy/kubernetes/base and kserve): the
admin APIs behind a key and statistics behind another, every model loaded at
start in explicit mode, a repository poller, a watchdog that brings back a
model whose stub died or hung, and a drain on SIGTERM that lets every request
in flight finish (docs/operations.md, docs/reliability.md). A published s3://
root (`make publish`) is served from a local folder that
runtime/repository_sync.py keeps on the snapshot it serves, polled
(docs/deployment.md). TritonServer alone is what the test suite and the
benchmarks start (one server per test session)."""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipelines.serving.progress import PROGRESS_DIR_ENV
from runtime.remote_repository import SNAPSHOT_ID, StorageError, check_access, is_remote
from runtime.repository_sync import DEFAULT_INTERVAL, RepositorySync
from runtime.paths import BUILD_DIR, MODEL_REPOSITORY
from runtime.distribution import assemble_backend_dir, assemble_lib_dir, find_distribution, server_environment
from runtime.supervisor import Supervisor
from runtime.triton_api import ADMIN_HEADER, GRPC_ADMIN_HEADER, GRPC_STATS_HEADER, STATS_HEADER
from runtime.watchdog import server_stubs

# The admin APIs the launcher puts behind the admin-key header, and the
# statistics API (it names every model) behind its own stats-key header, so a
# dashboard can read request counts and times without the admin key.
# Inference, health and metadata stay open (docs/operations.md).
RESTRICTED_APIS = ("model-repository", "model-config", "shared-memory", "trace", "logging")
STATISTICS_API = "statistics"
ADMIN_KEY_FILE = BUILD_DIR / "admin-key"
STATS_KEY_FILE = BUILD_DIR / "stats-key"
MIN_KEY_LENGTH = 16
PLACEHOLDER_KEYS = ("replace-me", "change-me", "changeme", "admin", "secret", "password")
EXIT_TIMEOUT_S = 10
DEFAULT_DRAIN_GRACE_S = 120.0
PR_SET_PDEATHSIG = 1
# loaded here, not in the forked child, where dlopen could meet a lock another thread held
_LIBC = ctypes.CDLL(None, use_errno=True)


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


def _post_json(url: str, payload: dict, timeout: float = 5.0, headers: dict | None = None):
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST", headers=headers or {})
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
        admin_key: str | None = None,
        explicit_model_control: bool = False,
        exit_on_error: bool = True,
        preload: str | None = None,
        stats_key: str | None = None,
        metrics_address: str | None = None,
    ):
        """poll_secs: model control mode poll (the server loads what changed in
        the repository, local or remote); it excludes explicit_model_control.
        admin_key: restrict RESTRICTED_APIS to requests with that header (and
        statistics too, unless stats_key puts it behind a key of its own).
        metrics_address: where the metrics port listens (Triton's default: all).
        explicit_model_control: every model loaded at start, then loaded and
        unloaded only through the model-control API (what the watchdog uses).
        exit_on_error=False: a model that fails to load is reported and the
        rest serves (`make serve`); True fails start-up (tests, perf).
        preload: a malloc library (`resolve_preload`) for the server and its
        stubs only, through their LD_PRELOAD."""
        if poll_secs and explicit_model_control:
            raise ValueError("model control is either poll (poll_secs) or explicit, not both")
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
        self.admin_key = admin_key
        self.stats_key = stats_key
        self.metrics_address = metrics_address
        self.explicit_model_control = explicit_model_control
        self.exit_on_error = exit_on_error
        self.preload = preload
        # Python backend shared-memory regions of this server alone, so a test
        # can tell that none was left behind in /dev/shm.
        self.shm_prefix = f"triton_{secrets.token_hex(4)}_"
        self.removed_shm: list[str] = []
        self.killed_stubs: list[int] = []
        self.process: subprocess.Popen | None = None
        # each stub's progress file (pipelines/serving/progress.py), read by the watchdog and the drain
        self.progress_dir: Path | None = None
        # local folder -> the published s3:// root it follows (runtime/repository_sync.py)
        self.followed: dict[Path, str] = {}

    @property
    def metrics_url(self) -> str:
        return f"localhost:{self.metrics_port}"

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
            f"--exit-on-error={str(self.exit_on_error).lower()}",
            "--strict-readiness=true",
            f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
        ]
        if self.metrics_address:
            cmd.append(f"--metrics-address={self.metrics_address}")
        if self.poll_secs:
            # the server re-reads the repository (local or remote) and loads
            # what changed; a new version is loaded before the old is unloaded
            cmd += ["--model-control-mode=poll", f"--repository-poll-secs={self.poll_secs}"]
        # the Python-based backends of backends/ run on the python backend's stubs too
        for backend in ("python", "onnxruntime", "openvino"):
            cmd.append(f"--backend-config={backend},shm-region-prefix-name={self.shm_prefix}{backend}_")
        if self.explicit_model_control:
            cmd += ["--model-control-mode=explicit", "--load-model=*"]
        return cmd + restricted_api_flags(self.admin_key, self.stats_key) + self.extra_args

    @property
    def admin_headers(self) -> dict[str, str]:
        return {ADMIN_HEADER: self.admin_key} if self.admin_key else {}

    def shm_regions(self) -> list[Path]:
        """This server's Python backend regions present in /dev/shm."""
        return sorted(Path("/dev/shm").glob(f"{self.shm_prefix}*"))

    def start(self, timeout: float = 180.0, stream_log: bool = False, abort: threading.Event | None = None) -> "TritonServer":
        dist = find_distribution()
        if dist.system:  # the official container: its native backends serve the network configs
            backend_dir = dist.backends_dir
        else:
            backend_dir = assemble_backend_dir(dist=dist)
            assemble_lib_dir(dist=dist)
        env = server_environment(dist)
        self.progress_dir = Path(tempfile.mkdtemp(prefix="triton-progress-", dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None))
        env[PROGRESS_DIR_ENV] = str(self.progress_dir)
        if self.preload:
            env["LD_PRELOAD"] = self.preload  # tritonserver passes its environment on to the stubs
        for repository in self.repositories:
            if is_remote(repository) or repository in self.followed:  # outside the checkout either way
                check_serving_package(env, self.followed.get(repository, repository))
            if is_remote(repository):
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
            preexec_fn=_die_with_parent,
        )
        if log_file:
            log_file.close()
        self.wait_ready(timeout, abort)
        return self

    def is_ready(self) -> bool:
        try:
            status, _ = _get_json(f"http://{self.http_url}/v2/health/ready", timeout=1.0)
            return status == 200
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def is_live(self) -> bool:
        try:
            status, _ = _get_json(f"http://{self.http_url}/v2/health/live", timeout=1.0)
            return status == 200
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def wait_ready(self, timeout: float, abort: threading.Event | None = None) -> None:
        """Until every model is READY; with exit_on_error=False, until the
        server listens (it does once the start-up loads are over, failed or
        not). `abort` set: KeyboardInterrupt, raised here and not from a signal
        handler (one raised inside Popen.poll leaves its lock held)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if abort is not None and abort.is_set():
                raise KeyboardInterrupt
            if self.process.poll() is not None:
                raise ServerStartError(self._failure(f"tritonserver exited with code {self.process.returncode}"))
            if self.is_ready() or (not self.exit_on_error and self.is_live()):
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
        return _post_json(f"http://{self.http_url}/v2/repository/index", {}, headers=self.admin_headers) or []

    def failed_models(self) -> dict[str, str]:
        """Model name -> why it is not READY (Triton's reason, e.g. the
        exception initialize raised)."""
        return {m["name"]: m.get("reason", "") for m in self.model_states() if m.get("state") != "READY"}

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                try:  # the server and its python stubs share one process group
                    os.killpg(self.process.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    self.process.kill()
                self.process.wait()
        self.killed_stubs += self.kill_leftover_stubs()
        self.removed_shm += self.remove_leftover_shm()
        if self.progress_dir is not None:
            shutil.rmtree(self.progress_dir, ignore_errors=True)

    def kill_leftover_stubs(self) -> list[int]:
        """Once tritonserver has exited: SIGKILL the stubs it started that still
        run. A version whose stub died under traffic never finishes unloading
        (Triton 24.10): the server exits on its exit timeout and that version's
        other instances would stay behind, reparented."""
        killed = []
        for stub in server_stubs(self.process.pid):
            try:
                os.kill(stub.pid, signal.SIGKILL)
                killed.append(stub.pid)
            except ProcessLookupError:
                pass
        return killed

    def remove_leftover_shm(self) -> list[str]:
        """Once tritonserver has exited: unlink the regions it left (the
        prefix is this server's alone). Triton leaves the region of a stub
        that died with a request in flight: that instance never finishes
        unloading (Triton 24.10), so shutdown ends on the exit timeout."""
        removed = []
        for region in self.shm_regions():
            try:
                region.unlink()
                removed.append(region.name)
            except OSError:
                pass
        return removed

    def __enter__(self) -> "TritonServer":
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the launcher dies, even by
    SIGKILL, so tritonserver shuts down (its stubs and shared memory with it)
    instead of keeping the ports as an orphan. Linux sends it when the thread
    that started the server ends: start servers from a thread that outlives them."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def restricted_api_flags(admin_key: str | None, stats_key: str | None) -> list[str]:
    """Triton's flags locking RESTRICTED_APIS behind the admin key and the
    statistics API behind the stats key (behind the admin key without one);
    the same over HTTP and gRPC (where the flag says "protocol")."""
    groups = []
    if admin_key:
        apis = RESTRICTED_APIS + (() if stats_key else (STATISTICS_API,))
        groups.append(f"{','.join(apis)}:{ADMIN_HEADER}={admin_key}")
    if stats_key:
        groups.append(f"{STATISTICS_API}:{STATS_HEADER}={stats_key}")
    return [f"--{flag}={group}" for group in groups for flag in ("http-restricted-api", "grpc-restricted-protocol")]


def check_key(variable: str, key: str) -> None:
    """A key from the environment must not be a placeholder or guessable."""
    if key.lower() in PLACEHOLDER_KEYS or len(key) < MIN_KEY_LENGTH:
        raise ValueError(
            f"${variable} is a placeholder or shorter than {MIN_KEY_LENGTH} characters: set a random one "
            f"(python3 -c 'import secrets; print(secrets.token_urlsafe(32))'), or leave it unset for a random key in a file"
        )


def key_from_environment(variable: str, default_file: Path) -> tuple[str, Path | None]:
    """$<variable>, else a new random key written to $<variable>_FILE (default
    `default_file`, mode 0600); returns (key, file it was written to or None).
    ValueError for a placeholder or short key."""
    key = os.environ.get(variable, "").strip()
    if key:
        check_key(variable, key)
        return key, None
    key = secrets.token_urlsafe(32)
    path = Path(os.environ.get(f"{variable}_FILE") or default_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # an older file keeps its mode through O_CREAT
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key + "\n")
    return key, path


def _follow_log(server: TritonServer, stop: threading.Event) -> None:
    """Echo the server log while it runs, so the foreground shows what it
    says; returns when the server exits or `stop` is set."""
    with open(server.log_path, errors="replace") as log:
        log.seek(0, os.SEEK_END)
        while server.process.poll() is None and not stop.is_set():
            line = log.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                stop.wait(0.2)


def _port_arg(value: str | None, env_name: str, default: int) -> int:
    if value:
        return int(value)
    return int(os.environ.get(env_name) or default)


def resolve_preload(preload: str | None) -> str | None:
    """`jemalloc` -> its library (Debian's libjemalloc2, `make jemalloc`); a path stays."""
    if preload in (None, "", "glibc"):
        return None
    if "/" in preload or preload.endswith(".so") or ".so." in preload:
        return preload
    found = ctypes.util.find_library(preload)
    if not found:
        raise SystemExit(f"--preload {preload}: lib{preload} not found (make jemalloc installs Debian's libjemalloc2)")
    return found


def served_preload() -> str | None:
    """The malloc library `make serve` preloads: $ALLOCATOR (the Makefile
    exports it; jemalloc unless set), glibc's own (None) when unset."""
    return resolve_preload(os.environ.get("ALLOCATOR"))


def tls_arguments(cert: str | None, key: str | None, client_ca: str | None) -> list[str]:
    """tritonserver flags for gRPC over TLS (mutual TLS when a client CA is given)."""
    if not cert and not key:
        if client_ca:
            raise ValueError("GRPC_TLS_CLIENT_CA needs GRPC_TLS_CERT and GRPC_TLS_KEY")
        return []
    if not (cert and key):
        raise ValueError("GRPC_TLS_CERT and GRPC_TLS_KEY go together")
    for path in (cert, key, client_ca):
        if path and not Path(path).is_file():
            raise ValueError(f"no such file: {path}")
    flags = ["--grpc-use-ssl=true", f"--grpc-server-cert={Path(cert).resolve()}", f"--grpc-server-key={Path(key).resolve()}"]
    if client_ca:
        flags += ["--grpc-use-ssl-mutual=true", f"--grpc-root-cert={Path(client_ca).resolve()}"]
    return flags


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run tritonserver on the model repository in the foreground")
    parser.add_argument(
        "--model-repository",
        action="append",
        help="local folder or s3:// gs:// as:// URL (a `make publish` root or one snapshot), repeatable; default $MODEL_REPOSITORY or model_repository/",
    )
    parser.add_argument(
        "--repository-poll-secs",
        type=int,
        help="every N seconds, load what changed in the repository (runtime/poller.py); default $REPOSITORY_POLL_SECS. "
        "A published s3:// root is followed (runtime/repository_sync.py) and polled every N seconds, 30 when unset",
    )
    parser.add_argument("--http-port", help="default $HTTP_PORT or 8000")
    parser.add_argument("--grpc-port", help="default $GRPC_PORT or 8001")
    parser.add_argument("--metrics-port", help="default $METRICS_PORT or 8002")
    parser.add_argument(
        "--metrics-address",
        default=os.environ.get("METRICS_ADDRESS") or "127.0.0.1",
        help="where the (unauthenticated) metrics port listens; default $METRICS_ADDRESS or 127.0.0.1 (0.0.0.0 for a scraper elsewhere)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for readiness")
    parser.add_argument("--log-verbose", type=int, default=0)
    parser.add_argument(
        "--model-config-name",
        help="serve <model>/configs/NAME.pbtxt where a model has one (e.g. tensorrt); default $MODEL_CONFIG_NAME",
    )
    parser.add_argument("--no-watchdog", action="store_true", help="do not reload models whose stub died or hung")
    parser.add_argument(
        "--drain-grace-secs",
        type=float,
        default=float(os.environ.get("DRAIN_GRACE_SECS") or DEFAULT_DRAIN_GRACE_S),
        help="on SIGTERM or Ctrl-C, how long requests in flight may take to finish; default $DRAIN_GRACE_SECS or 120",
    )
    parser.add_argument(
        "--allocator",
        default=os.environ.get("ALLOCATOR") or "glibc",
        help="malloc of the server and its stubs: glibc, jemalloc (steadier RSS in the soak, perf/results/soak*.md; "
        "make serve's default), or a library path; default $ALLOCATOR, else glibc",
    )
    return parser.parse_args(argv)


def build_server(args: argparse.Namespace) -> tuple[TritonServer, dict[str, Path | None]]:
    """The server `args` and the environment ask for, and where its keys are
    (variable -> file, None: from the environment). ValueError: a bad setting."""
    extra = tls_arguments(os.environ.get("GRPC_TLS_CERT"), os.environ.get("GRPC_TLS_KEY"), os.environ.get("GRPC_TLS_CLIENT_CA"))
    config_name = args.model_config_name or os.environ.get("MODEL_CONFIG_NAME")
    if config_name:
        extra.append(f"--model-config-name={config_name}")
    admin_key, admin_file = key_from_environment("ADMIN_KEY", ADMIN_KEY_FILE)
    stats_key, stats_file = key_from_environment("STATS_KEY", STATS_KEY_FILE)
    try:
        preload = resolve_preload(args.allocator)
    except SystemExit as missing:
        print(f"{missing}; serving with glibc malloc", file=sys.stderr)
        preload = None
    repositories = args.model_repository or [r for r in os.environ.get("MODEL_REPOSITORY", "").split(",") if r] or None
    server = TritonServer(
        repositories=repositories,
        http_port=_port_arg(args.http_port, "HTTP_PORT", 8000),
        grpc_port=_port_arg(args.grpc_port, "GRPC_PORT", 8001),
        metrics_port=_port_arg(args.metrics_port, "METRICS_PORT", 8002),
        metrics_address=args.metrics_address,
        log_verbose=args.log_verbose,
        extra_args=extra,
        admin_key=admin_key,
        stats_key=stats_key,
        # every model loaded at start, then loaded through the model-control API: by
        # the repository poller (runtime/poller.py) and the watchdog
        explicit_model_control=True,
        # a model that fails to load is reported and the rest serves
        exit_on_error=False,
        preload=preload,
    )
    return server, {"ADMIN_KEY": admin_file, "STATS_KEY": stats_file}


def announce(server: TritonServer, key_files: dict[str, Path | None], poll_secs: int | None) -> None:
    def say(line: str, error: bool = False) -> None:
        print(line, file=sys.stderr if error else sys.stdout, flush=True)

    tls = " (TLS)" if any("ssl" in flag for flag in server.extra_args) else ""
    say(f"HTTP    http://localhost:{server.http_port}")
    say(f"gRPC    localhost:{server.grpc_port}{tls}")
    say(f"metrics http://{server.metrics_address}:{server.metrics_port}/metrics (no key: keep it private, docs/operations.md)")
    where = {name: f"in {path} (mode 0600)" if path else f"from ${name}" for name, path in key_files.items()}
    say(f"admin APIs ({', '.join(RESTRICTED_APIS)}) need the header '{ADMIN_HEADER}' (gRPC: '{GRPC_ADMIN_HEADER}'): key {where['ADMIN_KEY']}")
    say(f"statistics API needs the header '{STATS_HEADER}' (gRPC: '{GRPC_STATS_HEADER}'): key {where['STATS_KEY']}")
    for model in sorted(server.model_states(), key=lambda m: m.get("name", "")):
        say(f"  {model.get('name'):32s} v{model.get('version', '-'):3s} {model.get('state', '?')}")
    failed = server.failed_models()
    for name, reason in sorted(failed.items()):
        say(f"FAILED to load '{name}': {reason}", error=True)
    if failed:
        say(f"{len(failed)} model(s) failed to load (tracebacks in {server.log_path}); serving the others", error=True)
    if poll_secs:
        say(f"polling the repository every {poll_secs} s: what changes there is loaded")


def is_published_root(repository: Path | str) -> bool:
    """An s3:// URL other than one snapshot's: what `make publish` switches
    (current.json), served through a sync, never polled by tritonserver itself."""
    return isinstance(repository, str) and repository.startswith("s3://") and not SNAPSHOT_ID.match(repository.rstrip("/").rsplit("/", 1)[-1])


@contextmanager
def following_published_roots(server: TritonServer, interval: float, log) -> Iterator[list[RepositorySync]]:
    """Each published root among the server's repositories replaced by a local
    folder (in a temporary one) that a RepositorySync brings to the served
    snapshot here (StorageError: ServerStartError) and keeps on it every
    `interval` seconds once started. On exit the syncs stop and their folders go."""
    workdir = None
    syncs: list[RepositorySync] = []
    try:
        for index, url in enumerate(server.repositories):
            if not is_published_root(url):
                continue
            workdir = workdir or Path(tempfile.mkdtemp(prefix="triton-sync-"))
            sync = RepositorySync(url, workdir / str(index), interval=interval, log=log)
            try:
                sync.sync_once()
            except (StorageError, OSError) as error:
                raise ServerStartError(f"cannot serve {url}: {error}") from error
            server.repositories[index] = sync.repository
            server.followed[sync.repository] = url
            syncs.append(sync)
        yield syncs
    finally:
        for sync in syncs:
            sync.stop()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        server, key_files = build_server(args)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    if server.preload:
        print(f"allocator: {server.preload}", flush=True)
    poll_secs = args.repository_poll_secs or int(os.environ.get("REPOSITORY_POLL_SECS") or 0) or None
    # SIGTERM (docker stop, Kubernetes, kill) and Ctrl-C only set a flag: an exception
    # raised from a handler inside Popen.poll() would leave its lock held.
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with following_published_roots(server, poll_secs or DEFAULT_INTERVAL, _say) as syncs:
            if syncs:  # the poller loads what a sync switched to
                poll_secs = poll_secs or int(DEFAULT_INTERVAL)
            return _serve(server, args, key_files, poll_secs, stop, syncs)
    except ServerStartError as error:
        print(error, file=sys.stderr)
        return 1


def _say(line: str) -> None:
    print(line, flush=True)


def _serve(
    server: TritonServer, args: argparse.Namespace, key_files: dict[str, Path | None], poll_secs: int | None,
    stop: threading.Event, syncs: list[RepositorySync],
) -> int:
    """Start, supervise until stopped (or exited by itself), drain, stop."""
    for sync in syncs:
        _say(f"following {sync.url} (snapshot {sync.snapshot}) in {sync.repository}, checked every {sync.interval:g} s")
    print(f"starting tritonserver on {', '.join(str(r) for r in server.repositories)} (log: {server.log_path})", flush=True)
    try:
        server.start(timeout=args.timeout, abort=stop)
    except KeyboardInterrupt:  # stop asked for during start-up
        print("stopping tritonserver ...", flush=True)
        server.stop()
        return _finish(server, None)
    announce(server, key_files, poll_secs)
    for sync in syncs:
        sync.start()
    supervisor = Supervisor(
        server.process.pid, server.http_url, server.metrics_url, server.admin_key, server.progress_dir,
        poll_secs=poll_secs, watchdog=not args.no_watchdog, log=_say,
    ).start()
    print("ready; Ctrl-C stops the server", flush=True)
    _follow_log(server, stop)
    if stop.is_set() and server.process.poll() is None:
        supervisor.drain(args.drain_grace_secs)
        print("stopping tritonserver ...", flush=True)
    supervisor.stop()
    # also when it ended by itself: removes what it left in /dev/shm. After a drain
    # nothing is in flight, so an idle client connection or stream that holds the
    # server past its exit timeout is not waited for long.
    server.stop(timeout=EXIT_TIMEOUT_S + 15 if supervisor.drained else 30.0)
    return _finish(server, supervisor)


def _finish(server: TritonServer, supervisor: Supervisor | None) -> int:
    code = server.process.returncode
    print(f"tritonserver stopped (exit code {code})", flush=True)
    if server.killed_stubs:
        print(f"killed {len(server.killed_stubs)} Python stub(s) that outlived tritonserver", flush=True)
    if server.removed_shm:
        print(f"removed {len(server.removed_shm)} shared-memory region(s) tritonserver left in /dev/shm", flush=True)
    if code == -signal.SIGKILL and supervisor is not None and supervisor.drained:
        print("every request in flight had finished; tritonserver, held past its exit timeout by an idle client "
              "connection or stream, was killed", flush=True)
        return 0
    if code == 1 and supervisor is not None and "Exit timeout expired" in _log_tail(server):
        # Not a failed shutdown: nothing was in flight any more, or only on versions
        # Triton 24.10 never finishes unloading (their stub had died).
        if supervisor.recoveries:
            print("the exit timeout expired on model versions whose stub had died (Triton 24.10 never finishes unloading them); "
                  "every other model stopped cleanly", flush=True)
            return 0
        if supervisor.drained:
            print("every request in flight had finished; tritonserver's exit timeout ran out waiting for idle "
                  "client connections to close", flush=True)
            return 0
    return 0 if code in (0, -signal.SIGINT) else code


def _log_tail(server: TritonServer, size: int = 4096) -> str:
    try:
        with open(server.log_path, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - size))
            return log.read().decode(errors="replace")
    except OSError:
        return ""


if __name__ == "__main__":
    sys.exit(main())
