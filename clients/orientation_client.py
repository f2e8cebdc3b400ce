"""Client for `orientation`: document orientation (0 / 90 / 180 / 270 degrees) of pictures.

    python clients/orientation_client.py page.jpg scans/ [--top-k 2] [--url URL] [--protocol http|grpc]

Prints one JSON line per file, `{"filename": ..., "top": [{"label": "90", "score": 0.97}, ...]}`
(label: the clockwise angle the content is turned by), or `{"filename": ..., "error": ...}`
for a file the server refuses; the exit status is 1 when any file failed. A folder
stands for its picture files (.jpg .jpeg .png .bmp .webp), sorted by name.
As a library: `OrientationClient(url, protocol).classify(data, top_k)` -> [(label, score), ...]."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tritonclient.utils import InferenceServerException

from clients.common import Tls, add_connection_arguments, connect, tls_from_args, error_message, make_inputs, picture_files, picture_request

MODEL = "orientation"
OUTPUT = "probabilities"
NUM_LABELS = 4


def parse_classification(entry) -> tuple[str, float]:
    """One 'score:index:label' string of Triton's classification extension -> (label, score)."""
    text = entry.decode() if isinstance(entry, bytes) else str(entry)
    score, _, label = text.split(":", 2)
    return label, float(score)


class OrientationClient:
    def __init__(self, url: str | None = None, protocol: str = "http", tls: Tls | None = None):
        self.module, self.client = connect(url, protocol, tls=tls)

    def classify(self, data: bytes, top_k: int = 1) -> list[tuple[str, float]]:
        """Encoded picture bytes -> the top_k (label, score) pairs, best first
        (the server ranks them: class_count on the output)."""
        if not 1 <= top_k <= NUM_LABELS:
            raise ValueError(f"top_k must be between 1 and {NUM_LABELS}, got {top_k}")
        inputs = make_inputs(self.module, picture_request(data))
        output = self.module.InferRequestedOutput(OUTPUT, class_count=top_k)
        result = self.client.infer(MODEL, inputs, outputs=[output])
        return [parse_classification(entry) for entry in result.as_numpy(OUTPUT).reshape(-1)]

    def close(self) -> None:
        self.client.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="picture files or folders of pictures")
    add_connection_arguments(parser)
    parser.add_argument("--top-k", type=int, default=1, choices=range(1, NUM_LABELS + 1), metavar=f"1..{NUM_LABELS}")
    args = parser.parse_args(argv)
    client = OrientationClient(args.url, args.protocol, tls=tls_from_args(args))
    failed = 0
    try:
        for path in picture_files(args.paths):
            try:
                top = client.classify(path.read_bytes(), args.top_k)
                line = {"filename": str(path), "top": [{"label": label, "score": round(score, 6)} for label, score in top]}
            except (OSError, InferenceServerException) as error:
                failed += 1
                line = {"filename": str(path), "error": error_message(error)}
            print(json.dumps(line), flush=True)
    finally:
        client.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
