"""nginx in front of tritonserver replicas, as a Kubernetes Service or
ingress would be: one HTTP and one gRPC (`grpc_pass`) upstream over every
replica, limits at the door, active readiness checks and careful retries.

Limits (`Limits`; every refusal is nginx's own, the replicas never see it):
- request body: at most 64 MiB (`client_max_body_size`), whether announced
  (Content-Length) or streamed (chunked): a bigger one gets 413 with a JSON
  error (gRPC: RESOURCE_EXHAUSTED). nginx holds a whole HTTP body before it
  picks a replica (request buffering), so a refused body never reaches one.
- rate: 200 requests/s per client address, bursts of 400 (`limit_req`);
  concurrency: 64 requests in progress per client address (`limit_conn`);
  over either, 429 (gRPC: RESOURCE_EXHAUSTED).
- slow clients: 10 s for the headers, 60 s between two reads of the body.
- workers: unprivileged. Started as root, nginx runs its workers as
  `www-data` (Debian's nginx user) or `nobody`, with their temp folders
  theirs alone; started as anyone else, they run as that user.

Retries: nginx moves a request to the other replica only where that cannot
run work twice:
- any request whose connection to its replica failed before it was sent
  (refused, connect timeout: `error`, `timeout`);
- an idempotent one (GET, HEAD: health, metadata) also after a 502/503 or a
  read timeout.
A POST (inference) that reached a replica is never sent again by nginx (no
`non_idempotent`): a slow request that times out after 300 s is answered 504,
not run a second time elsewhere. A client that knows its requests are safe to
repeat (the served models are stateless) retries itself: `HTTP_RETRY` for
requests/urllib3, `GRPC_RETRY_CHANNEL_ARGS` (clients/common.py) for gRPC
(UNAVAILABLE, on the open calls only: a refused locked call is not repeated). nginx's
own gRPC errors (502, 503, 504) go out as a trailers-only status 14
(`@grpc_unavailable`): its default error page has a body, and a gRPC client
that has received a body counts the call as committed and never retries it.

Health: `Balancer` asks every replica's /v2/health/ready every second; after
two failures in a row the replica is marked `down` (configuration rewritten,
nginx reloaded gracefully: requests in flight finish), after two successes it
is back. tritonserver runs with --strict-readiness, so a replica with a model
that is not ready leaves the rotation. While no replica is ready none is
marked down (nginx would refuse everything). Besides, a replica whose
connections fail is left out for `fail_timeout` seconds (passive check).

`python -m deploy.balancer --http-port 8080 --grpc-port 8081 127.0.0.1:8000,127.0.0.1:8001 ...`
runs Debian's nginx in the foreground, with the readiness checks."""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from urllib3.util import Retry

# re-exported for the balancer's clients: one policy, retrying only the open calls
from clients.common import GRPC_RETRY_CHANNEL_ARGS as GRPC_RETRY_CHANNEL_ARGS

NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx")
WORKER_USERS = ("www-data", "nobody")
TEMP_FOLDERS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")

# requests.Session().mount("http://", HTTPAdapter(max_retries=HTTP_RETRY)): the
# client's decision to repeat a request (POST included) that nginx answered
# 502/503/504 because its replica went away mid-request, or whose idle
# keep-alive connection nginx closed as it reloaded (a rotation change); nginx
# itself never repeats a POST.
HTTP_RETRY = Retry(total=2, connect=2, read=2, status=2, status_forcelist=(502, 503, 504), allowed_methods=None, backoff_factor=0.1, raise_on_status=False)


@dataclass(frozen=True)
class Limits:
    max_body: str = "64m"  # pictures and batches of texts; nginx's default is 1m
    rate: str = "200r/s"  # per client address
    burst: int = 400
    connections: int = 64  # requests in progress per client address
    read_timeout: int = 300  # s: the slowest served request (Stable Diffusion on a busy CPU)
    body_timeout: int = 60  # s between two reads of a request body
    header_timeout: int = 10


@dataclass(frozen=True)
class Replica:
    http: str  # host:port
    grpc: str


def find_nginx() -> str | None:
    for candidate in NGINX_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def worker_user() -> str | None:
    """The unprivileged user the workers switch to when nginx starts as root;
    None otherwise (nginx cannot switch, its workers run as the caller)."""
    if os.geteuid() != 0:
        return None
    for name in WORKER_USERS:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError(f"no unprivileged user ({', '.join(WORKER_USERS)}) for nginx's workers")


def worker_temp_dir(user: str | None) -> Path:
    """Where the workers write request bodies that do not fit in memory: a
    folder of its own under the system temp folder (reachable by them) that
    only they can write."""
    temp = Path(tempfile.mkdtemp(prefix="balancer-temp-"))
    account = pwd.getpwnam(user) if user else None
    for name in ("", *TEMP_FOLDERS):
        (temp / name).mkdir(exist_ok=True)
        if account:
            os.chown(temp / name, account.pw_uid, account.pw_gid)
    return temp


def _json_error(status: int, message: str) -> str:
    return f"default_type application/json; return {status} '{json.dumps({'error': message})}';"


def _grpc_error(code: int, message: str) -> str:
    return f'default_type application/grpc; add_header grpc-status {code} always; add_header grpc-message "{message}" always; return 204;'


def nginx_config(
    workdir: Path,
    replicas: list[Replica],
    http_port: int,
    grpc_port: int,
    fail_timeout: int = 3,
    listen: str = "127.0.0.1",
    limits: Limits = Limits(),
    temp_dir: Path | None = None,
    user: str | None = None,
    down: frozenset[int] = frozenset(),
    max_fails: int = 1,
) -> str:
    """A complete nginx.conf; configuration, logs and pid under workdir,
    temp files under temp_dir (default workdir). `down`: indices of replicas
    out of the rotation."""
    temp = Path(temp_dir or workdir)
    for name in TEMP_FOLDERS:
        (temp / name).mkdir(parents=True, exist_ok=True)

    def servers(kind: str) -> str:
        return "\n".join(
            f"        server {getattr(r, kind)} max_fails={max_fails} fail_timeout={fail_timeout}s{' down' if i in down else ''};" for i, r in enumerate(replicas)
        )

    temp_paths = "\n".join(f"    {name}_temp_path {temp / name};" for name in TEMP_FOLDERS)
    too_large = f"request body over {limits.max_body} (deploy.balancer limit)"
    too_many = "too many requests from this client (deploy.balancer limit)"
    return f"""# written by deploy/balancer.py
{f"user {user};" if user else "# workers run as the user that started nginx"}
worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    # '|'-separated: $upstream_addr lists every replica tried, separated by ', '
    log_format upstreams '$msec|$status|$upstream_addr|$upstream_status|$request_time|$request';
    access_log {workdir}/access.log upstreams;
{temp_paths}
    server_tokens off;
    client_max_body_size {limits.max_body};
    client_body_buffer_size 1m;
    client_header_timeout {limits.header_timeout}s;
    client_body_timeout {limits.body_timeout}s;
    limit_req_zone $binary_remote_addr zone=per_client_rate:10m rate={limits.rate};
    limit_conn_zone $binary_remote_addr zone=per_client_connections:10m;
    limit_req zone=per_client_rate burst={limits.burst} nodelay;
    limit_conn per_client_connections {limits.connections};
    limit_req_status 429;
    limit_conn_status 429;

    upstream triton_http {{
{servers("http")}
        keepalive 32;
        keepalive_timeout 30s;
    }}
    upstream triton_grpc {{
{servers("grpc")}
        keepalive 32;
        keepalive_timeout 30s;
    }}

    server {{
        listen {listen}:{http_port};
        error_page 413 @too_large;
        error_page 429 @too_many;
        error_page 502 @bad_gateway;
        error_page 503 @unavailable;
        error_page 504 @timed_out;
        location / {{
            proxy_pass http://triton_http;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 2s;
            proxy_send_timeout 60s;
            proxy_read_timeout {limits.read_timeout}s;
            # no non_idempotent: a POST that reached a replica is never sent again
            proxy_next_upstream error timeout http_502 http_503;
            proxy_next_upstream_tries 2;
        }}
        location @too_large {{ {_json_error(413, too_large)} }}
        location @too_many {{ {_json_error(429, too_many)} }}
        # nginx's own failures (a replica's own answers pass through as they are)
        location @bad_gateway {{ {_json_error(502, "no replica answered (deploy.balancer)")} }}
        location @unavailable {{ {_json_error(503, "no replica available (deploy.balancer)")} }}
        location @timed_out {{ {_json_error(504, f"no answer within {limits.read_timeout} s (deploy.balancer)")} }}
    }}
    server {{
        listen {listen}:{grpc_port} http2;
        location / {{
            grpc_pass grpc://triton_grpc;
            grpc_connect_timeout 2s;
            grpc_send_timeout 60s;
            grpc_read_timeout {limits.read_timeout}s;
            grpc_next_upstream error timeout http_502 http_503;
            grpc_next_upstream_tries 2;
            # nginx's own 502/503/504 page is a response with a body: a gRPC
            # client takes it as committed and does not retry it
            error_page 502 503 504 = @grpc_unavailable;
            error_page 413 = @grpc_too_large;
            error_page 429 = @grpc_too_many;
        }}
        # the same failure as a trailers-only gRPC status UNAVAILABLE, which
        # the client's retry policy (GRPC_RETRY_CHANNEL_ARGS) does retry
        location @grpc_unavailable {{ {_grpc_error(14, "replica unavailable (deploy.balancer)")} }}
        # limits: RESOURCE_EXHAUSTED, which no retry policy here repeats
        location @grpc_too_large {{ {_grpc_error(8, too_large)} }}
        location @grpc_too_many {{ {_grpc_error(8, too_many)} }}
    }}
}}
"""


def start_nginx(workdir: Path, config: str) -> subprocess.Popen:
    nginx = find_nginx()
    if nginx is None:
        raise RuntimeError("nginx is not installed: `make nginx` (Debian's package, needs root for apt-get)")
    conf = _write_checked(workdir, config, nginx)
    return subprocess.Popen([nginx, "-p", str(workdir), "-e", str(workdir / "error.log"), "-c", str(conf)], start_new_session=True)


def _write_checked(workdir: Path, config: str, nginx: str) -> Path:
    """Write nginx.conf once nginx accepts it (-e: the compiled-in
    /var/log/nginx/error.log is opened before the configuration is read)."""
    candidate, conf = workdir / "nginx.conf.new", workdir / "nginx.conf"
    candidate.write_text(config)
    check = subprocess.run([nginx, "-t", "-q", "-p", str(workdir), "-e", str(workdir / "error.log"), "-c", str(candidate)], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"nginx refused the configuration: {check.stderr.strip()}")
    candidate.replace(conf)
    return conf


def replica_ready(replica: Replica, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://{replica.http}/v2/health/ready", timeout=timeout) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Balancer:
    """nginx over the replicas plus the readiness checks (a thread)."""

    workdir: Path
    replicas: list[Replica]
    http_port: int
    grpc_port: int
    limits: Limits = Limits()
    listen: str = "127.0.0.1"
    fail_timeout: int = 3
    check_interval: float | None = 1.0  # None: no readiness checks
    fall: int = 2  # failed checks in a row before a replica is marked down
    rise: int = 2  # passed checks in a row before it is back
    max_fails: int = 1
    down: frozenset[int] = frozenset()
    process: subprocess.Popen | None = field(default=None, init=False)
    _streaks: dict[int, int] = field(default_factory=dict, init=False)  # >0 passes, <0 failures in a row
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    def __post_init__(self):
        self.user = worker_user()
        self.temp_dir: Path | None = None

    def config(self) -> str:
        return nginx_config(
            self.workdir,
            self.replicas,
            self.http_port,
            self.grpc_port,
            fail_timeout=self.fail_timeout,
            listen=self.listen,
            limits=self.limits,
            temp_dir=self.temp_dir,
            user=self.user,
            down=self.down,
            max_fails=self.max_fails,
        )

    def start(self) -> "Balancer":
        self.temp_dir = worker_temp_dir(self.user)
        self.process = start_nginx(self.workdir, self.config())
        if self.check_interval:
            self._thread = threading.Thread(target=self._check_loop, name="balancer-readiness", daemon=True)
            self._thread.start()
        return self

    def check_once(self) -> bool:
        """Ask every replica once; reload nginx when the rotation changes. True when it did."""
        for index, replica in enumerate(self.replicas):
            streak = self._streaks.get(index, 0)
            self._streaks[index] = max(streak, 0) + 1 if replica_ready(replica) else min(streak, 0) - 1
        down = {i for i in self.down if self._streaks[i] < self.rise} | {i for i, s in self._streaks.items() if s <= -self.fall}
        if len(down) == len(self.replicas):
            down = set()  # none ready: keep them all, nginx's passive checks still apply
        if frozenset(down) == self.down:
            return False
        self.down = frozenset(down)
        _write_checked(self.workdir, self.config(), find_nginx())
        self.process.send_signal(signal.SIGHUP)  # graceful: old workers finish their requests
        return True

    def _check_loop(self) -> None:
        while not self._stop.wait(self.check_interval):
            self.check_once()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> "Balancer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Debian's nginx balancing HTTP and gRPC over tritonserver replicas")
    parser.add_argument("replicas", nargs="+", help="HTTP_HOST:PORT,GRPC_HOST:PORT per replica")
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--grpc-port", type=int, default=8081)
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--max-body", default=Limits.max_body, help="largest request body (nginx size, default %(default)s)")
    parser.add_argument("--rate", default=Limits.rate, help="requests per client address (default %(default)s)")
    parser.add_argument("--connections", type=int, default=Limits.connections, help="requests in progress per client address (default %(default)s)")
    args = parser.parse_args(argv)
    replicas = [Replica(*item.split(",", 1)) for item in args.replicas]
    limits = Limits(max_body=args.max_body, rate=args.rate, connections=args.connections)
    workdir = Path(tempfile.mkdtemp(prefix="balancer-"))
    balancer = Balancer(workdir, replicas, args.http_port, args.grpc_port, limits, listen=args.listen).start()
    print(f"nginx on HTTP {args.listen}:{args.http_port}, gRPC {args.listen}:{args.grpc_port} (config and logs in {workdir})", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: balancer.process.terminate())
    try:
        return balancer.process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        balancer.stop()


if __name__ == "__main__":
    sys.exit(main())
