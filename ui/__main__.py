"""`python -m ui` (make ui): the web page against a running Triton server.

    python -m ui [--url localhost:8001] [--protocol grpc|http] [--ssl --root-certificates CA.pem
                 [--private-key KEY.pem --certificate-chain CERT.pem]] [--metrics-url http://localhost:8002/metrics]
                 [--host 127.0.0.1] [--port 7860]

The connection options are the clients' own (clients/common.py); gRPC by
default, because Stable Diffusion's Stop cancels a gRPC stream. $UI_AUTH
turns on a login: `user:password` pairs separated by commas, or the path of
a file with one pair a line (read from the environment, not the command
line, so that no password shows in the process list). The page never holds
Triton's admin key: it uses the open inference, health and metadata APIs
and the metrics endpoint."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import urllib.request
from pathlib import Path

from clients.common import add_connection_arguments, tls_from_args
from ui.actions import MAX_PICTURE_BYTES
from ui.backend import Backend
from ui.samples import write_samples

DEFAULT_PORT = 7860


def parse_auth(value: str | None) -> list[tuple[str, str]] | None:
    """$UI_AUTH -> [(user, password), ...], or None (no login). A path to a
    file: one `user:password` a line (blank lines and # comments skipped);
    else comma-separated `user:password` pairs."""
    if not value or not value.strip():
        return None
    path = Path(value.strip())
    entries = path.read_text().splitlines() if path.is_file() else value.split(",")
    pairs = []
    for entry in (e.strip() for e in entries):
        if not entry or entry.startswith("#"):
            continue
        user, colon, password = entry.partition(":")
        if not (colon and user and password):  # the entry is not echoed: it may hold a password
            raise ValueError("UI_AUTH: every entry must be user:password (comma-separated, or one a line in a file)")
        pairs.append((user, password))
    if not pairs:
        raise ValueError(f"UI_AUTH: no user:password pair in {value if not path.is_file() else path}")
    return pairs


def default_metrics_url(url: str) -> str:
    """The metrics page on the host of the clients' url, on Triton's default metrics port."""
    host = url.rsplit(":", 1)[0] if ":" in url else url
    return f"http://{host}:8002/metrics"


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_connection_arguments(parser)
    parser.set_defaults(protocol="grpc")
    parser.add_argument("--metrics-url", help="Triton's metrics page (default: port 8002 on the --url host)")
    parser.add_argument("--host", default="127.0.0.1", help="address the page listens on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--generate-concurrency", type=int, default=4, help="Stable Diffusion streams served at once")
    return parser


def server_live(backend: Backend) -> bool:
    try:
        with urllib.request.urlopen(backend.metrics_url, timeout=3):
            return True
    except OSError:
        return False


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up requests
    try:
        auth = parse_auth(os.environ.get("UI_AUTH"))
    except (OSError, ValueError) as error:
        print(error, file=sys.stderr)
        return 2
    url = args.url or "localhost:8001"
    backend = Backend(url=url, protocol=args.protocol, tls=tls_from_args(args), metrics_url=args.metrics_url or default_metrics_url(url))
    if not server_live(backend):
        logging.getLogger("ui").warning("no Triton metrics at %s yet: the tabs say so until the server is up", backend.metrics_url)
    # SIGTERM (make demo's stop, kill) ends the page as Ctrl-C does: Gradio
    # closes its server and the work folder below is removed
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="triton-ui-") as folder:
        work = Path(folder)
        # Gradio's file cache (uploads, pictures it serves) inside the work folder, so it goes too
        os.environ["GRADIO_TEMP_DIR"] = str(work / "gradio")
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        # imported here: Gradio reads both variables when it is imported
        from ui.page import build

        page = build(backend, write_samples(work / "samples"), work / "downloads", args.generate_concurrency)
        page.queue(default_concurrency_limit=8, max_size=64)
        quieten(page)
        print(f"page: http://{args.host}:{args.port} (Triton {backend.protocol} {backend.url}, metrics {backend.metrics_url})", flush=True)
        page.launch(
            server_name=args.host,
            server_port=args.port,
            auth=auth,
            auth_message="Log in to the Triton pipelines page" if auth else None,
            show_error=True,
            max_file_size=MAX_PICTURE_BYTES,
            allowed_paths=[folder],
            ssr_mode=False,
            footer_links=["api"],
            quiet=True,
        )
    return 0


def quieten(page) -> None:
    """Gradio's queue looks for work every 1 ms and for progress every 10 ms,
    idle or not: about 5% of a core here, taken from the server beside it
    on a small machine. Every 10 ms and 50 ms keep a request's wait for
    pick-up under 10 ms for a tenth of the wake-ups. (Private attributes of
    the pinned Gradio; a newer one without them keeps its own pace.)"""
    queue = getattr(page, "_queue", None)
    for name, seconds in (("sleep_when_free", 0.01), ("progress_update_sleep_when_free", 0.05)):
        if hasattr(queue, name):
            setattr(queue, name, seconds)


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
