"""What a user writes first: a plain HTTP server (threaded, or asyncio like
the seed's Sanic server) that runs the reference library once per request. Started as its own process by the perf
suites so it does not share the benchmark's GIL.

    python -m perf.baseline_server --pipeline text_embedding --port 9000

POST /infer with the request body (JSON for text, raw bytes for images);
the answer is JSON."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

from runtime.paths import checkpoint_dir


def text_embedding_handler():
    # each handler imports its own library: a baseline process serves one pipeline
    from sentence_transformers import SentenceTransformer

    from references.text import packaged_model_dir  # likewise

    model = SentenceTransformer(str(packaged_model_dir()), device="cpu")

    def handle(body: bytes) -> object:
        text = json.loads(body)["text"]
        return model.encode([text], normalize_embeddings=True)[0].tolist()

    return handle


def ocr_handler():
    from references.ocr import LibraryOCR  # as in text_embedding_handler

    engine = LibraryOCR("PP-OCRv6")  # rapidocr 3.10 as a user calls it

    def handle(body: bytes) -> object:
        return [{"box": box.tolist(), "text": text, "text_score": score} for box, _, text, score in engine(body)]

    return handle


def _clip():
    from references.clip import TorchCLIP  # as in text_embedding_handler

    return TorchCLIP(checkpoint_dir("clip"))


def clip_image_handler():
    clip = _clip()

    def handle(body: bytes) -> object:
        return clip.embed_images([Image.open(io.BytesIO(body))])[0].tolist()

    return handle


def clip_text_handler():
    clip = _clip()

    def handle(body: bytes) -> object:
        return clip.embed_texts([json.loads(body)["text"]])[0].tolist()

    return handle


def stable_diffusion_handler():
    """diffusers' pipeline per request; the checkpoint folder from
    $SD_CHECKPOINT (default checkpoints/stable_diffusion); the body is JSON
    {"prompt", "steps", "seed", "guidance_scale"}."""
    from references.stable_diffusion import DiffusersSD  # as in text_embedding_handler

    pipe = DiffusersSD(os.environ.get("SD_CHECKPOINT") or checkpoint_dir("stable_diffusion"))

    def handle(body: bytes) -> object:
        query = json.loads(body)
        pixels = pipe([query["prompt"]], int(query["steps"]), float(query.get("guidance_scale", 7.5)), int(query.get("seed", 0)))
        return list(pixels.shape)  # the pixels' shape: the answer's size does not decide the timing

    return handle


HANDLERS = {
    "text_embedding": text_embedding_handler,
    "ocr": ocr_handler,
    "clip_image": clip_image_handler,
    "clip_text": clip_text_handler,
    "stable_diffusion": stable_diffusion_handler,
}


async def _serve_async(handle, port: int) -> None:
    """The seed's Sanic-style server, without the framework: an asyncio loop
    accepting HTTP/1.1 keep-alive connections and running the library in the
    default thread pool per request."""
    loop = asyncio.get_running_loop()

    async def connection(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                if lines[0].startswith("GET"):
                    payload, status = b"{}", 200
                else:
                    try:
                        payload, status = json.dumps(await loop.run_in_executor(None, handle, body)).encode(), 200
                    except Exception as error:
                        payload, status = json.dumps({"error": str(error)}).encode(), 400
                writer.write(
                    f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def serve(pipeline: str, port: int, mode: str = "threads") -> None:
    handle = HANDLERS[pipeline]()
    if mode == "async":
        asyncio.run(_serve_async(handle, port))
        return

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                payload, status = json.dumps(handle(body)).encode(), 200
            except Exception as error:
                payload, status = json.dumps({"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}).encode(), 400
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self):  # readiness
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


class BaselineServer:
    """Run `serve` in a subprocess for the duration of a with-block."""

    def __init__(self, pipeline: str, port: int, mode: str = "threads"):
        self.pipeline, self.port, self.mode = pipeline, port, mode
        self.url = f"http://127.0.0.1:{port}/infer"

    def __enter__(self):
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        cmd = [sys.executable, "-m", "perf.baseline_server", "--pipeline", self.pipeline, "--port", str(self.port), "--mode", self.mode]
        self.process = subprocess.Popen(cmd, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=1)
                return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"baseline server for {self.pipeline} exited")
                time.sleep(0.3)
        raise RuntimeError("baseline server did not start")

    def post(self, body: bytes) -> object:
        request = urllib.request.Request(self.url, data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:  # the handler's own message, not only "400 Bad Request"
            raise RuntimeError(f"baseline server for {self.pipeline}: HTTP {error.code}: {error.read().decode(errors='replace')[:2000]}") from error

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--pipeline", choices=sorted(HANDLERS), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["threads", "async"], default="threads")
    args = parser.parse_args()
    serve(args.pipeline, args.port, args.mode)
