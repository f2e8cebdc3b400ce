"""nginx in front of tritonserver replicas, as a Kubernetes Service or
ingress would be: one HTTP and one gRPC (`grpc_pass`) upstream over every
replica, passive health checks and retries.

Retry policy:
- HTTP: nginx resends a request to the next replica when the connection to its
  replica fails or breaks before a response (`error`, `timeout`) or the replica
  answers 502/503; at most one other replica (`proxy_next_upstream_tries 2`).
  Inference is a POST, which nginx treats as non-idempotent and never retries
  by default; the served models are stateless (no sequence batching, no side
  effects), so `non_idempotent` is on: a request cut off by a dying replica
  runs again on the other one (nginx holds the request body, so it can).
- gRPC: nginx streams the request body to the replica (grpc_pass never
  buffers it), so it can only move a request whose body was not sent yet
  (connection refused, a dead keepalive connection). A request cut off in
  flight comes back as UNAVAILABLE, gRPC's retryable status, and the client
  retries it (`GRPC_RETRY_CHANNEL_ARGS`, gRPC's own retry policy), like any
  gRPC client behind a Kubernetes Service. nginx's own error answers (502,
  503, 504) go out as a trailers-only gRPC status 14 (`@grpc_unavailable`):
  its default error page has a body, and a gRPC client that has received a
  response with a body counts the call as committed and never retries it.
- A replica that fails once is left out for `fail_timeout` seconds, then tried
  again (passive health check), so a restarted replica gets traffic back
  without any reconfiguration.

`python -m deploy.balancer --http-port 8080 --grpc-port 8081 127.0.0.1:8000,127.0.0.1:8001 ...`
writes a configuration and runs Debian's nginx on it in the foreground."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx")

# tritonclient.grpc.InferenceServerClient(url, channel_args=GRPC_RETRY_CHANNEL_ARGS):
# up to 3 attempts of a call that ends UNAVAILABLE (a replica gone mid-request).
GRPC_RETRY_CHANNEL_ARGS = [
    ("grpc.enable_retries", 1),
    (
        "grpc.service_config",
        json.dumps(
            {
                "methodConfig": [
                    {
                        "name": [{"service": "inference.GRPCInferenceService"}],
                        "retryPolicy": {
                            "maxAttempts": 3,
                            "initialBackoff": "0.1s",
                            "maxBackoff": "1s",
                            "backoffMultiplier": 2,
                            "retryableStatusCodes": ["UNAVAILABLE"],
                        },
                    }
                ]
            }
        ),
    ),
]


def find_nginx() -> str | None:
    for candidate in NGINX_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


@dataclass(frozen=True)
class Replica:
    http: str  # host:port
    grpc: str


def nginx_config(workdir: Path, replicas: list[Replica], http_port: int, grpc_port: int, fail_timeout: int = 3, listen: str = "127.0.0.1") -> str:
    """A complete nginx.conf that keeps every file it writes under workdir
    (runs as any user, beside a system nginx)."""
    temp = {name: workdir / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(parents=True, exist_ok=True)

    def servers(kind: str) -> str:
        return "\n".join(f"        server {getattr(r, kind)} max_fails=1 fail_timeout={fail_timeout}s;" for r in replicas)

    # as root, nginx would run its workers as nobody, who cannot write the temp folders here
    user = "user root root;\n" if os.geteuid() == 0 else ""
    return f"""# written by deploy/balancer.py
{user}worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    # '|'-separated: $upstream_addr lists every replica tried, separated by ', '
    log_format upstreams '$msec|$status|$upstream_addr|$upstream_status|$request_time|$request';
    access_log {workdir}/access.log upstreams;
    client_body_temp_path {temp['client_body']};
    proxy_temp_path {temp['proxy']};
    fastcgi_temp_path {temp['fastcgi']};
    uwsgi_temp_path {temp['uwsgi']};
    scgi_temp_path {temp['scgi']};
    # pictures and batches of texts: larger than nginx's 1 MB default
    client_max_body_size 64m;

    upstream triton_http {{
{servers("http")}
        keepalive 32;
    }}
    upstream triton_grpc {{
{servers("grpc")}
        keepalive 32;
    }}

    server {{
        listen {listen}:{http_port};
        location / {{
            proxy_pass http://triton_http;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 2s;
            proxy_read_timeout 300s;
            proxy_next_upstream error timeout http_502 http_503 non_idempotent;
            proxy_next_upstream_tries 2;
        }}
    }}
    server {{
        listen {listen}:{grpc_port} http2;
        location / {{
            grpc_pass grpc://triton_grpc;
            grpc_connect_timeout 2s;
            grpc_read_timeout 300s;
            grpc_next_upstream error timeout http_502 http_503 non_idempotent;
            grpc_next_upstream_tries 2;
            # nginx's own 502/503/504 page is a response with a body: a gRPC
            # client takes it as committed and does not retry it
            error_page 502 503 504 = @grpc_unavailable;
        }}
        # the same failure as a trailers-only gRPC status UNAVAILABLE, which
        # the client's retry policy (GRPC_RETRY_CHANNEL_ARGS) does retry
        location @grpc_unavailable {{
            default_type application/grpc;
            add_header grpc-status 14 always;
            add_header grpc-message "replica unavailable (deploy.balancer)" always;
            return 204;
        }}
    }}
}}
"""


def start_nginx(workdir: Path, config: str) -> subprocess.Popen:
    nginx = find_nginx()
    if nginx is None:
        raise RuntimeError("nginx is not installed: `make nginx` (Debian's package, needs root for apt-get)")
    conf = workdir / "nginx.conf"
    conf.write_text(config)
    # -e: the compiled-in /var/log/nginx/error.log is opened before the
    # configuration is read; -p: relative paths under workdir
    check = subprocess.run([nginx, "-t", "-q", "-p", str(workdir), "-e", str(workdir / "error.log"), "-c", str(conf)], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"nginx refused the configuration: {check.stderr.strip()}")
    return subprocess.Popen([nginx, "-p", str(workdir), "-e", str(workdir / "error.log"), "-c", str(conf)], start_new_session=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Debian's nginx balancing HTTP and gRPC over tritonserver replicas")
    parser.add_argument("replicas", nargs="+", help="HTTP_HOST:PORT,GRPC_HOST:PORT per replica")
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--grpc-port", type=int, default=8081)
    parser.add_argument("--listen", default="127.0.0.1")
    args = parser.parse_args(argv)
    replicas = [Replica(*item.split(",", 1)) for item in args.replicas]
    workdir = Path(tempfile.mkdtemp(prefix="balancer-"))
    process = start_nginx(workdir, nginx_config(workdir, replicas, args.http_port, args.grpc_port, listen=args.listen))
    print(f"nginx on HTTP {args.listen}:{args.http_port}, gRPC {args.listen}:{args.grpc_port} (config and logs in {workdir})", flush=True)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return process.wait()


if __name__ == "__main__":
    sys.exit(main())
