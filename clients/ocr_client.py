"""OCR client for the `ocr` ensemble and the `ocr_bls` model (same interface).

    python clients/ocr_client.py IMAGE_OR_FOLDER [...] [--url URL] [--protocol http|grpc]
        [--model ocr|ocr_bls] [--concurrency N] [--draw OUT_DIR]

Prints JSON in the seed's OCR demo shape:
    [{"filename": ..., "result": [{"box": [x1, y1, ... x4, y4], "box_score": ..., "text": ..., "text_score": ...}]}]
and the served model set on standard error ("model set: PP-OCRv6"; PP-OCRv4
when the server runs --model-config-name=ppocrv4). The set is read from the
recogniser's metadata, which is open where the model configuration API is
locked: its output width is the set's dictionary size.

As a library: `OcrClient(url, protocol).recognize(image_bytes)` returns the
lines of one image as dicts; `OcrClient.model_set()` names the served set."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from clients.common import (
    Tls,
    add_connection_arguments,
    connect,
    encoded_bytes_tensor,
    infer_each,
    make_inputs,
    make_outputs,
    picture_files,
    tls_from_args,
)
from pipelines.ocr.params import model_set_of_classes

OUTPUTS = ("boxes", "box_scores", "texts", "text_scores")
RECOGNISER, RECOGNISER_OUTPUT = "ocr_rec", "softmax_11.tmp_0"


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


def model_set_from_metadata(metadata) -> str:
    """The set named by ocr_rec's metadata (a dict from HTTP, a message from gRPC)."""
    outputs = metadata["outputs"] if isinstance(metadata, dict) else [{"name": o.name, "shape": list(o.shape)} for o in metadata.outputs]
    for output in outputs:
        if output["name"] == RECOGNISER_OUTPUT:
            classes = int(output["shape"][-1])
            served = model_set_of_classes(classes)
            return served.name if served else f"unknown ({classes} recogniser classes)"
    return "unknown (ocr_rec has no recogniser output)"


class OcrClient:
    def __init__(self, url: str | None = None, protocol: str = "http", model: str = "ocr", concurrency: int = 1, tls: Tls | None = None):
        self.module, self.client = connect(url, protocol, concurrency=concurrency, tls=tls)
        self.model = model

    def recognize(self, image_bytes: bytes) -> list[dict]:
        inputs = make_inputs(self.module, {"input_image": encoded_bytes_tensor(image_bytes)})
        result = self.client.infer(self.model, inputs, outputs=make_outputs(self.module, OUTPUTS))
        return lines_from_outputs(*(result.as_numpy(name) for name in OUTPUTS))

    def recognize_files(self, files: list[Path], concurrency: int = 1):
        """(path, bytes, lines or None, error or None) per file, in order, at most `concurrency` in flight."""
        contents: dict[int, bytes] = {}

        def request(index_path):
            index, path = index_path
            contents[index] = path.read_bytes()
            return {"input_image": encoded_bytes_tensor(contents[index])}

        answers = infer_each(self.client, self.module, self.model, enumerate(files), request, OUTPUTS, concurrency)
        for index, outputs, problem in answers:
            lines = None if outputs is None else lines_from_outputs(*(outputs[name] for name in OUTPUTS))
            yield files[index], contents.pop(index, b""), lines, problem

    def model_set(self) -> str:
        return model_set_from_metadata(self.client.get_model_metadata(RECOGNISER))


def draw_boxes(image_bytes: bytes, lines: list[dict], out_path: Path) -> None:
    image = cv2.imdecode(np.frombuffer(image_bytes, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return
    for line in lines:
        corners = np.array(line["box"], dtype=np.float32).reshape(4, 2).round().astype(np.int32)
        cv2.polylines(image, [corners], isClosed=True, color=(0, 0, 255), thickness=2)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_path), image)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="The server serves PP-OCRv6 (rapidocr 3.10) unless it runs --model-config-name=ppocrv4 (PP-OCRv4); the set served is printed on standard error.",
    )
    parser.add_argument("images", nargs="+", help="image files or folders")
    add_connection_arguments(parser)
    parser.add_argument("--model", default="ocr", choices=["ocr", "ocr_bls"])
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight")
    parser.add_argument("--draw", type=Path, help="write a copy of each image with its boxes drawn into this folder")
    args = parser.parse_args(argv)

    client = OcrClient(args.url, args.protocol, args.model, concurrency=args.concurrency, tls=tls_from_args(args))
    pictures = []
    for path, data, lines, problem in client.recognize_files(picture_files(args.images), args.concurrency):
        if problem is not None:
            pictures.append({"filename": str(path), "error": problem})
            continue
        if args.draw:
            draw_boxes(data, lines, args.draw / f"{path.stem}_ocr.png")
        pictures.append({"filename": str(path), "result": lines})
    print(f"model set: {client.model_set()}", file=sys.stderr)
    print(json.dumps(pictures, ensure_ascii=False, indent=1))
    return 1 if any("error" in picture for picture in pictures) else 0


if __name__ == "__main__":
    sys.exit(main())
