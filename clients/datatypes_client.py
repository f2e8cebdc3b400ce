"""Send one request through the `datatypes` ensemble and show what came back.

    python clients/datatypes_client.py [--url localhost:8000] [--protocol http|grpc] [--batch 2]

As a library: `round_trip(client, module, tensors)` returns the output arrays."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from clients.common import add_connection_arguments, connect, make_inputs, make_outputs, tls_from_args

KINDS = ("string", "UINT8_array", "INT8_array", "FP32_image", "bool")


def example_tensors(batch: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "ensemble_input_string": np.array([[f"row {b}".encode(), "ünïcödé 文字".encode()] for b in range(batch)], dtype=np.object_),
        "ensemble_input_UINT8_array": rng.integers(0, 256, (batch, 4)).astype(np.uint8),
        "ensemble_input_INT8_array": rng.integers(-128, 128, (batch, 4)).astype(np.int8),
        "ensemble_input_FP32_image": rng.standard_normal((batch, 3, 2, 2)).astype(np.float32),
        "ensemble_input_bool": rng.integers(0, 2, (batch, 4)).astype(bool),
    }


def round_trip(client, module, tensors: dict[str, np.ndarray], binary: bool = True) -> dict[str, np.ndarray]:
    outputs = [f"ensemble_output_{kind}" for kind in KINDS]
    result = client.infer("datatypes", make_inputs(module, tensors, binary), outputs=make_outputs(module, outputs, binary))
    return {name: result.as_numpy(name) for name in outputs}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_connection_arguments(parser)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="HTTP JSON encoding instead of binary")
    args = parser.parse_args(argv)
    module, client = connect(args.url, args.protocol, tls=tls_from_args(args))
    sent = example_tensors(args.batch)
    got = round_trip(client, module, sent, binary=not args.json)
    same = True
    for kind in KINDS:
        a, b = sent[f"ensemble_input_{kind}"], got[f"ensemble_output_{kind}"]
        equal = a.shape == b.shape and all(
            (x.encode() if isinstance(x, str) else x) == y for x, y in zip(b.reshape(-1), a.reshape(-1))
        )
        same &= equal
        print(f"{kind:12s} {str(b.dtype):8s} shape {list(b.shape)}  {'unchanged' if equal else 'CHANGED'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
