"""`python -m ui.demo` (make demo): the server (`python -m runtime.server`,
what make serve runs) and the page (`python -m ui`) in this process's group;
prints the page's URL once the server has loaded every model. Ctrl-C, which
the terminal sends the whole group, or SIGTERM stops both: the server shuts
down cleanly (its stubs and shared memory with it), and nothing is left.

    python -m ui.demo [--http-port 8000 --grpc-port 8001 --metrics-port 8002] [--model-repository DIR ...]
                      [--host 127.0.0.1] [--port 7860] [-- UI OPTIONS]

Options after `--` go to `python -m ui` (TLS, for a server that serves gRPC over TLS)."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

STOP_TIMEOUT_S = 60.0


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def wait_for(children: list[subprocess.Popen], stop: threading.Event, done, timeout: float) -> bool:
    """Poll `done()` until true (True), or until a child exits, Ctrl-C or the timeout (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        if any(child.poll() is not None for child in children):
            return False
        if done():
            return True
        stop.wait(0.25)
    return False


def stop_all(children: list[subprocess.Popen], grace: float = 0.0) -> int:
    """Stop each child that still runs after `grace` seconds (the page with
    SIGTERM, the server launcher with SIGINT: each then shuts down cleanly),
    wait, SIGKILL what outlives the timeout; the server's exit code (0 when
    none was started). A Ctrl-C reached them all already: the grace lets them
    finish that shutdown without a second signal in the middle of it."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(child.poll() is None for child in children):
        time.sleep(0.1)
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGINT if child is children[-1] else signal.SIGTERM)
    for child in children:
        try:
            child.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return (children[-1].returncode or 0) if children else 0


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--model-repository", action="append", help="passed on to runtime.server (default model_repository/)")
    parser.add_argument("--host", default="127.0.0.1", help="address the page listens on")
    parser.add_argument("--port", type=int, default=7860, help="the page's port")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the server")
    argv = list(sys.argv[1:] if argv is None else argv)
    ui_options = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    return args, ui_options


def main(argv=None) -> int:
    args, ui_options = parse(argv)
    stop = threading.Event()
    received: list[int] = []

    def on_signal(number, _frame) -> None:
        received.append(number)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    children: list[subprocess.Popen] = []
    try:
        served = serve(args, ui_options, children, stop)
    finally:
        # Ctrl-C in a terminal went to the whole process group, children included
        server_code = stop_all(children, grace=10.0 if signal.SIGINT in received else 0.0)
    if served or stop.is_set():
        return server_code
    return server_code or 1


def serve(args, ui_options: list[str], children: list[subprocess.Popen], stop: threading.Event) -> bool:
    """Start the server, then the page, into `children` (page first); print
    the URL and wait for Ctrl-C. False when either failed to come up."""
    ports = ["--http-port", str(args.http_port), "--grpc-port", str(args.grpc_port), "--metrics-port", str(args.metrics_port)]
    repositories = [flag for repository in args.model_repository or [] for flag in ("--model-repository", repository)]
    # children stay in this process group: the terminal's Ctrl-C reaches them too
    children.append(subprocess.Popen([sys.executable, "-m", "runtime.server", *ports, *repositories]))
    # the server listens once its start-up loads are over, failed or not
    if not wait_for(children, stop, lambda: http_status(f"http://localhost:{args.http_port}/v2/health/live") == 200, args.timeout):
        return False
    every_model_ready = http_status(f"http://localhost:{args.http_port}/v2/health/ready") == 200
    metrics = f"http://localhost:{args.metrics_port}/metrics"
    page = [sys.executable, "-m", "ui", "--url", f"localhost:{args.grpc_port}", "--metrics-url", metrics, "--host", args.host, "--port", str(args.port)]
    children.insert(0, subprocess.Popen(page + ui_options))
    url = f"http://{'localhost' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
    if not wait_for(children, stop, lambda: http_status(url) in (200, 401), 120.0):
        return False
    state = "every model READY" if every_model_ready else "NOT every model is READY: the server's output and the page's Server tab say which"
    print(f"\ndemo: {state}; the page: {url}  (Ctrl-C stops the page and the server)\n", flush=True)
    wait_for(children, stop, lambda: False, float("inf"))
    return True


if __name__ == "__main__":
    sys.exit(main())
