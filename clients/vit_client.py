"""Client for `vit` (ensemble) and `vit_python` (one Python model): ViT features of pictures.

    python clients/vit_client.py picture.jpg photos/ [--model vit|vit_python] [--concurrency 4]
        [--cls-values 5] [--out features.npz] [--url URL] [--protocol http|grpc]

Prints one JSON line per picture, `{"filename": ..., "shape": [197, 192], "cls": [...]}`
(the shape of last_hidden_state and the first values of its CLS token, row 0),
or `{"filename": ..., "error": ...}` for a file the server refuses; the exit
status is 1 when any file failed. `--out` also saves the full arrays in one .npz:
`last_hidden_state` float32 [N, tokens, hidden] (the processor resizes every
picture to one size) and `filenames`. A folder stands for its picture files
(.jpg .jpeg .png .bmp .webp), recursively, sorted by name.
As a library: `VitClient(url, protocol, model).features(data)` -> float32 [tokens, hidden]."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from clients.common import Tls, add_connection_arguments, connect, tls_from_args, infer_each, make_inputs, make_outputs, picture_files, picture_request

MODELS = ("vit", "vit_python")
OUTPUT = "last_hidden_state"


class VitClient:
    def __init__(self, url: str | None = None, protocol: str = "http", model: str = "vit", concurrency: int = 1, tls: Tls | None = None):
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, not {model!r}")
        self.model = model
        self.module, self.client = connect(url, protocol, concurrency=concurrency, tls=tls)

    def features(self, data: bytes) -> np.ndarray:
        """Encoded picture bytes -> last_hidden_state float32 [tokens, hidden]."""
        result = self.client.infer(self.model, make_inputs(self.module, picture_request(data)), outputs=make_outputs(self.module, [OUTPUT]))
        return result.as_numpy(OUTPUT)[0]

    def features_each(
        self, pictures: Iterable[Path | str | bytes], concurrency: int = 1
    ) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
        """(index, features or None, error message or None) per picture, in
        order, `concurrency` requests in flight."""
        for index, outputs, problem in infer_each(self.client, self.module, self.model, pictures, picture_request, [OUTPUT], concurrency):
            yield index, None if outputs is None else outputs[OUTPUT][0], problem

    def close(self) -> None:
        self.client.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="picture files or folders of pictures")
    add_connection_arguments(parser)
    parser.add_argument("--model", choices=MODELS, default="vit")
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight")
    parser.add_argument("--cls-values", type=int, default=5, help="how many CLS-token values to print")
    parser.add_argument("--out", type=Path, help="save the full last_hidden_state arrays to this .npz")
    args = parser.parse_args(argv)

    files = picture_files(args.paths)
    client = VitClient(args.url, args.protocol, args.model, concurrency=args.concurrency, tls=tls_from_args(args))
    saved: dict[int, np.ndarray] = {}
    failed = 0
    try:
        for index, features, problem in client.features_each(files, args.concurrency):
            if problem is not None:
                failed += 1
                line = {"filename": str(files[index]), "error": problem}
            else:
                if args.out:
                    saved[index] = features
                cls = [round(float(v), 6) for v in features[0, : args.cls_values]]
                line = {"filename": str(files[index]), "shape": list(features.shape), "cls": cls}
            print(json.dumps(line), flush=True)
    finally:
        client.close()
    if args.out and saved:
        indices = sorted(saved)
        np.savez(
            args.out,
            last_hidden_state=np.stack([saved[i] for i in indices]).astype(np.float32),
            filenames=np.array([str(files[i]) for i in indices], dtype=np.str_),
        )
    return 1 if failed or not files else 0


if __name__ == "__main__":
    sys.exit(main())
