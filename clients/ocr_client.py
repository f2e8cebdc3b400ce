"""OCR client for the `ocr` ensemble and the `ocr_bls` model (same interface).

    python clients/ocr_client.py IMAGE_OR_FOLDER [...] [--url URL] [--protocol http|grpc]
        [--model ocr|ocr_bls] [--concurrency N] [--draw OUT_DIR]

Prints JSON in the seed's OCR demo shape:
    [{"filename": ..., "result": [{"box": [x1, y1, ... x4, y4], "box_score": ..., "text": ..., "text_score": ...}]}]

As a library: `OcrClient(url, protocol).recognize(image_bytes)` returns the
lines of one image as dicts."""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from clients.common import Tls, add_connection_arguments, connect, tls_from_args, encoded_bytes_tensor, make_inputs, make_outputs, picture_files

OUTPUTS = ("boxes", "box_scores", "texts", "text_scores")


def lines_from_outputs(boxes: np.ndarray, box_scores: np.ndarray, texts: np.ndarray, text_scores: np.ndarray) -> list[dict]:
    return [
        {
            "box": [round(float(v), 1) for v in box.reshape(-1)],
            "box_score": float(box_score),
            "text": text.decode("utf-8") if isinstance(text, bytes) else str(text),
            "text_score": float(text_score),
        }
        for box, box_score, text, text_score in zip(boxes, box_scores, texts, text_scores)
    ]


class OcrClient:
    def __init__(self, url: str | None = None, protocol: str = "http", model: str = "ocr", concurrency: int = 1, tls: Tls | None = None):
        self.module, self.client = connect(url, protocol, concurrency=concurrency, tls=tls)
        self.model = model

    def recognize(self, image_bytes: bytes) -> list[dict]:
        inputs = make_inputs(self.module, {"input_image": encoded_bytes_tensor(image_bytes)})
        result = self.client.infer(self.model, inputs, outputs=make_outputs(self.module, OUTPUTS))
        return lines_from_outputs(*(result.as_numpy(name) for name in OUTPUTS))


def draw_boxes(image_bytes: bytes, lines: list[dict], out_path: Path) -> None:
    import cv2

    image = cv2.imdecode(np.frombuffer(image_bytes, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return
    for line in lines:
        corners = np.array(line["box"], dtype=np.float32).reshape(4, 2).round().astype(np.int32)
        cv2.polylines(image, [corners], isClosed=True, color=(0, 0, 255), thickness=2)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_path), image)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", help="image files or folders")
    add_connection_arguments(parser)
    parser.add_argument("--model", default="ocr", choices=["ocr", "ocr_bls"])
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight")
    parser.add_argument("--draw", type=Path, help="write a copy of each image with its boxes drawn into this folder")
    args = parser.parse_args(argv)

    files = picture_files(args.images)
    client = OcrClient(args.url, args.protocol, args.model, concurrency=args.concurrency, tls=tls_from_args(args))

    def one(path: Path) -> dict:
        data = path.read_bytes()
        try:
            lines = client.recognize(data)
        except Exception as error:  # report per file, go on with the others
            return {"filename": str(path), "error": str(error)}
        if args.draw:
            draw_boxes(data, lines, args.draw / f"{path.stem}_ocr.png")
        return {"filename": str(path), "result": lines}

    if args.concurrency > 1 and args.protocol == "grpc":
        with ThreadPoolExecutor(args.concurrency) as pool:
            results = list(pool.map(one, files))
    else:
        results = [one(path) for path in files] if args.concurrency <= 1 else _http_concurrent(client, files, args)
    print(json.dumps(results, ensure_ascii=False, indent=1))
    return 1 if any("error" in r for r in results) else 0


def _http_concurrent(client: OcrClient, files: list[Path], args) -> list[dict]:
    """HTTP client objects are not thread-safe: use its async_infer pool."""
    module = client.module
    datas = [path.read_bytes() for path in files]
    pending = [
        client.client.async_infer(
            client.model,
            make_inputs(module, {"input_image": encoded_bytes_tensor(data)}),
            outputs=make_outputs(module, OUTPUTS),
        )
        for data in datas
    ]
    results = []
    for path, data, request in zip(files, datas, pending):
        try:
            result = request.get_result()
        except Exception as error:
            results.append({"filename": str(path), "error": str(error)})
            continue
        lines = lines_from_outputs(*(result.as_numpy(name) for name in OUTPUTS))
        if args.draw:
            draw_boxes(data, lines, args.draw / f"{path.stem}_ocr.png")
        results.append({"filename": str(path), "result": lines})
    return results


if __name__ == "__main__":
    sys.exit(main())
