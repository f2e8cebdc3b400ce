"""Client for `stable_diffusion` and `stable_diffusion_stream`: text to image.

    python clients/stable_diffusion_client.py "a prompt" ["another prompt" ...] [--steps 20] [--seed 7]
        [--guidance-scale 7.5] [--negative-prompt TEXT ...] [--height H --width W] [--out image.png]
        [--stream [--previews DIR --preview-every K]] [--url URL] [--protocol http|grpc]

Saves one PNG per prompt (`image.png`, then `image-1.png`, ...) and prints a
JSON line per picture. `--stream` asks `stable_diffusion_stream` and shows a
progress bar from its step responses: over gRPC through a bidirectional
stream, over HTTP through `generate_stream` (server-sent events); `--previews
DIR` saves the preview pictures it sends every `--preview-every` steps.
Ctrl-C cancels the request on the server (gRPC: the stream's or the call's
cancellation; HTTP: the connection is closed).
As a library: `StableDiffusionClient(url, protocol).generate(["a prompt"], steps=20, seed=7)` -> uint8 [N, H, W, 3];
`cancel()` from another thread stops a running `generate_stream` the same way."""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import requests
from PIL import Image
from tritonclient.utils import InferenceServerException

from clients.common import DEFAULT_URLS, Tls, add_connection_arguments, connect, make_inputs, tls_from_args

PLAIN, STREAM = "stable_diffusion", "stable_diffusion_stream"
OUTPUT = "generated_image"


def request_tensors(
    prompts: Sequence[str],
    negative_prompts: Sequence[str] | None = None,
    steps: int | None = None,
    guidance_scale: float | None = None,
    seed: int | None = None,
    height: int | None = None,
    width: int | None = None,
    preview_every: int | None = None,
) -> dict[str, np.ndarray]:
    """The model's input tensors (the ones left None take the server's defaults)."""
    tensors = {"prompt": np.array([p.encode("utf-8") for p in prompts], dtype=np.object_)}
    if negative_prompts:
        tensors["negative_prompt"] = np.array([p.encode("utf-8") for p in negative_prompts], dtype=np.object_)
    for name, value, dtype in (
        ("steps", steps, np.int32),
        ("guidance_scale", guidance_scale, np.float32),
        ("seed", seed, np.int64),
        ("height", height, np.int32),
        ("width", width, np.int32),
        ("preview_every", preview_every, np.int32),
    ):
        if value is not None:
            tensors[name] = np.array([value], dtype=dtype)
    return tensors


StepCallback = Callable[[int, "np.ndarray | None"], None]


def sse_picture(values: list, count: int, height: np.ndarray | None, width: np.ndarray | None) -> np.ndarray:
    """The generate endpoint sends a tensor's values flat: [N, h, w, 3] back
    from the count and the aspect ratio asked for (square when no size was
    given: the checkpoints' default), which also fits a scaled-down preview."""
    pixels = np.asarray(values, dtype=np.uint8).reshape(-1)
    area = pixels.size // (count * 3)
    aspect = int(width[0]) / int(height[0]) if height is not None and width is not None else 1.0
    for h in (int(round((area / aspect) ** 0.5)) + d for d in (0, -1, 1)):
        if h > 0 and area % h == 0 and count * h * (area // h) * 3 == pixels.size:
            return pixels.reshape(count, h, area // h, 3)
    raise ValueError(f"{pixels.size} pixel values are not {count} pictures of aspect {aspect:g} (give --height and --width)")


class StableDiffusionClient:
    def __init__(self, url: str | None = None, protocol: str = "http", tls: Tls | None = None):
        self.protocol = protocol
        self.url = url or DEFAULT_URLS[protocol]
        self.tls = tls
        self.module, self.client = connect(self.url, protocol, tls=tls)
        # cancel() may come from another thread while generate_stream waits
        self._cancelled = threading.Event()
        self._stream_lock = threading.Lock()
        self._http_response = None

    def generate(self, prompts: Sequence[str], **settings) -> np.ndarray:
        """uint8 [N, H, W, 3] from `stable_diffusion`; Ctrl-C cancels a gRPC call on the server."""
        inputs = make_inputs(self.module, request_tensors(prompts, **settings))
        if self.protocol == "http":
            return self.client.infer(PLAIN, inputs).as_numpy(OUTPUT)
        answers: queue.Queue = queue.Queue()
        call = self.client.async_infer(PLAIN, inputs, callback=lambda result, error: answers.put((result, error)))
        try:
            result, error = answers.get()
        except KeyboardInterrupt:
            call.cancel()
            raise
        if error is not None:
            raise error
        return result.as_numpy(OUTPUT)

    def generate_stream(self, prompts: Sequence[str], on_step: StepCallback | None = None, **settings) -> np.ndarray | None:
        """The same from `stable_diffusion_stream`, calling `on_step(step,
        preview or None)` per step response; None when the server stopped
        without a picture (cancelled)."""
        tensors = request_tensors(prompts, **settings)
        if self.protocol == "http":
            return self._generate_stream_http(tensors, on_step)
        answers: queue.Queue = queue.Queue()
        with self._stream_lock:
            if self._cancelled.is_set():
                self._cancelled.clear()
                return None
            self.client.start_stream(callback=lambda result, error: answers.put((result, error)))
        try:
            with self._stream_lock:  # a cancel() from now on finds the request sent
                self._send(tensors, answers)
            while True:
                result, error = answers.get()
                if error is not None:
                    if self._cancelled.is_set():  # the stream's cancellation, asked for by cancel()
                        return None
                    raise error
                response = result.get_response()
                names = {output.name for output in response.outputs}
                if "step" in names and on_step is not None:
                    on_step(int(result.as_numpy("step")[0]), result.as_numpy("preview") if "preview" in names else None)
                if OUTPUT in names:
                    return result.as_numpy(OUTPUT)
                if response.parameters["triton_final_response"].bool_param:
                    return None
        except KeyboardInterrupt:
            self.cancel()
            raise
        finally:
            with self._stream_lock:
                self.client.stop_stream()
                self._cancelled.clear()

    def _send(self, tensors: dict[str, np.ndarray], answers: queue.Queue) -> None:
        try:
            self.client.async_stream_infer(STREAM, make_inputs(self.module, tensors), enable_empty_final_response=True)
        except InferenceServerException:
            # the stream failed before the request went out (no server there): its
            # callback has the reason, async_stream_infer only "no longer in valid state"
            try:
                _, reason = answers.get(timeout=5)
            except queue.Empty:
                raise
            if reason is None:
                raise
            raise reason from None

    def cancel(self) -> None:
        """Stop the `generate_stream` running on another thread, or the next
        one: over gRPC the stream's requests are cancelled (the server stops
        the steps), over HTTP the connection is closed; that `generate_stream`
        returns None."""
        self._cancelled.set()
        if self.protocol == "http":
            response = self._http_response
            if response is not None:
                response.close()
            return
        with self._stream_lock:
            self.client.stop_stream(cancel_requests=True)

    def _generate_stream_http(self, tensors: dict[str, np.ndarray], on_step: StepCallback | None) -> np.ndarray | None:
        """POST /v2/models/stable_diffusion_stream/generate_stream: one
        server-sent event (`data: {json}`) per response."""
        body = {name: [v.decode("utf-8") if isinstance(v, bytes) else v.item() for v in array.reshape(-1)] for name, array in tensors.items()}
        url = f"{'https' if self.tls else 'http'}://{self.url}/v2/models/{STREAM}/generate_stream"
        tls = {}
        if self.tls:  # a TLS-terminating proxy in front of Triton, as for the other HTTP clients
            tls["verify"] = self.tls.root_certificates or True
            if self.tls.certificate_chain:
                tls["cert"] = (self.tls.certificate_chain, self.tls.private_key)
        count, height, width = len(tensors["prompt"]), tensors.get("height"), tensors.get("width")
        if self._cancelled.is_set():
            self._cancelled.clear()
            return None
        with requests.post(url, json=body, stream=True, timeout=3600, **tls) as response:
            self._http_response = response
            if response.status_code != 200:
                raise RuntimeError(f"{url}: HTTP {response.status_code}: {response.text}")
            try:
                for line in response.iter_lines():
                    if self._cancelled.is_set():  # asked for before the response was there to close
                        return None
                    if not line.startswith(b"data: "):
                        continue
                    event = json.loads(line[len(b"data: ") :])
                    if "error" in event:
                        raise RuntimeError(event["error"])
                    if "step" in event and on_step is not None:
                        step = event["step"][0] if isinstance(event["step"], list) else event["step"]
                        preview = sse_picture(event["preview"], count, height, width) if "preview" in event else None
                        on_step(int(step), preview)
                    if OUTPUT in event:
                        return sse_picture(event[OUTPUT], count, height, width)
            except (requests.RequestException, AttributeError, ValueError):
                if self._cancelled.is_set():  # cancel() closed the connection under iter_lines
                    return None
                raise
            finally:
                self._http_response = None
                self._cancelled.clear()
        return None

    def close(self) -> None:
        self.client.close()


def save_pictures(pixels: np.ndarray, path: Path) -> list[Path]:
    """One PNG per picture: `path`, then `stem-1.png`, ... for the others."""
    if pixels.ndim == 3:  # the generate endpoint may drop the leading axis of one picture
        pixels = pixels[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for index, picture in enumerate(pixels.reshape(len(pixels), *pixels.shape[-3:])):
        target = path if index == 0 else path.with_name(f"{path.stem}-{index}{path.suffix or '.png'}")
        Image.fromarray(np.ascontiguousarray(picture)).save(target)
        written.append(target)
    return written


def progress_bar(total: int | None) -> StepCallback:
    def show(step: int, preview) -> None:
        if total:  # some schedulers take a step more than asked (PNDM: steps + 1)
            bar = "#" * (30 * min(step, total) // total)
            sys.stderr.write(f"\r[{bar:<30}] step {step}")
        else:
            sys.stderr.write(f"\rstep {step}")
        sys.stderr.flush()

    return show


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompts", nargs="+", help="1 to 8 prompts (one picture each)")
    add_connection_arguments(parser)
    parser.add_argument("--negative-prompt", nargs="+", help="one per prompt")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--guidance-scale", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--out", type=Path, default=Path("image.png"))
    parser.add_argument("--stream", action="store_true", help="progress from stable_diffusion_stream")
    parser.add_argument("--previews", type=Path, help="with --stream: save the previews in this folder")
    parser.add_argument("--preview-every", type=int, default=5, help="with --previews: a preview every K steps (default 5)")
    args = parser.parse_args(argv)

    client = StableDiffusionClient(args.url, args.protocol, tls=tls_from_args(args))
    settings = dict(
        negative_prompts=args.negative_prompt, steps=args.steps, guidance_scale=args.guidance_scale, seed=args.seed, height=args.height, width=args.width
    )
    try:
        if args.stream:
            bar = progress_bar(args.steps)

            def on_step(step: int, preview) -> None:
                bar(step, preview)
                if preview is not None and args.previews is not None:
                    save_pictures(preview, args.previews / f"step-{step:04d}.png")

            pixels = client.generate_stream(args.prompts, on_step, preview_every=args.preview_every if args.previews else None, **settings)
            sys.stderr.write("\n")
            if pixels is None:
                print(json.dumps({"error": "the server stopped without a picture"}))
                return 1
        else:
            pixels = client.generate(args.prompts, **settings)
    except KeyboardInterrupt:
        sys.stderr.write("\ncancelled\n")
        return 130
    finally:
        client.close()
    for prompt, path in zip(args.prompts, save_pictures(pixels, args.out)):
        print(json.dumps({"prompt": prompt, "file": str(path), "shape": list(pixels.shape[-3:])}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
