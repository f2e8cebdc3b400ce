"""CLIP search on Triton: index a folder of pictures, then search it by text or by picture.

    python clients/clip_search.py index FOLDER [...] --out vectors.npz [--concurrency 8] [--url URL] [--protocol http|grpc]
    python clients/clip_search.py search vectors.npz "a text query" [--top-k 5] [--url URL] [--protocol http|grpc]
    python clients/clip_search.py similar vectors.npz IMAGE [--top-k 5] [--url URL] [--protocol http|grpc]

`index` embeds every picture file under the folders (recursive; .jpg .jpeg .png
.bmp .webp) with `clip_image_embedding`, `--concurrency` requests in flight and
a progress bar on stderr, and saves the vectors and paths in one .npz; files the
server refuses are reported on stderr and left out (exit status 1). `search`
embeds the query with `clip_text_embedding`, `similar` embeds a picture; both
print one JSON line per hit, `{"path": ..., "score": ...}`, best first (score:
cosine similarity, the dot product of the normalised embeddings).

As a library: `embed_images`, `embed_texts`, `save_index`, `load_index`, `rank`
(`pipelines.client.infer_each` sends the requests)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np

from clients.common import (
    PICTURE_SUFFIXES,
    add_connection_arguments,
    tls_from_args,
    connect,
    infer_each,
    make_inputs,
    make_outputs,
    picture_files,
    picture_request,
)

IMAGE_MODEL = "clip_image_embedding"
TEXT_MODEL = "clip_text_embedding"
OUTPUT = "embedding"
TEXT_BATCH = 64  # clip_text_embedding's max_batch_size


class ProgressBar:
    """`done/total` bar redrawn in place on a stream (stderr by default); call it
    with the count done, `close()` ends the line."""

    def __init__(self, total: int, label: str = "", width: int = 30, stream=None):
        self.total, self.label, self.width = total, label, width
        self.stream = stream or sys.stderr
        self.started = time.monotonic()

    def __call__(self, done: int) -> None:
        filled = self.width * done // max(self.total, 1)
        rate = done / max(time.monotonic() - self.started, 1e-9)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r{self.label}[{bar}] {done}/{self.total} {rate:.1f}/s")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


class Embedded(NamedTuple):
    """What `embed_images` returns: the embedded items' indices (input order),
    their vectors float32 [len(indices), D], and {index: message} of the failed."""

    indices: list[int]
    vectors: np.ndarray
    errors: dict[int, str]


def embed_images(
    client,
    module,
    pictures: Sequence[Path | str | bytes],
    concurrency: int = 1,
    progress: Callable[[int], None] | None = None,
) -> Embedded:
    """Embed pictures (paths or encoded bytes) with clip_image_embedding, one
    request each, `concurrency` in flight; `progress(count done)` after each answer.
    A picture the server refuses (or a file that cannot be read) is left out
    and its message kept in `errors`."""

    vectors: dict[int, np.ndarray] = {}
    errors: dict[int, str] = {}
    answers = infer_each(client, module, IMAGE_MODEL, pictures, picture_request, [OUTPUT], concurrency)
    for count, (index, outputs, problem) in enumerate(answers, 1):
        if problem is None:
            vectors[index] = outputs[OUTPUT][0]
        else:
            errors[index] = problem
        if progress:
            progress(count)
    indices = sorted(vectors)
    stacked = np.stack([vectors[i] for i in indices]).astype(np.float32) if indices else np.zeros((0, 0), np.float32)
    return Embedded(indices, stacked, errors)


def embed_texts(client, module, texts: Sequence[str], batch_size: int = TEXT_BATCH) -> np.ndarray:
    """Embed texts with clip_text_embedding, `batch_size` texts per request -> float32 [N, D]."""
    parts = []
    for start in range(0, len(texts), batch_size):
        chunk = np.array([[text.encode("utf-8")] for text in texts[start : start + batch_size]], dtype=np.object_)
        result = client.infer(TEXT_MODEL, make_inputs(module, {"text": chunk}), outputs=make_outputs(module, [OUTPUT]))
        parts.append(result.as_numpy(OUTPUT))
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 0), np.float32)


def save_index(path: Path | str, vectors: np.ndarray, paths: Sequence[Path | str]) -> None:
    """One .npz: `vectors` float32 [N, D] and `paths` (unicode strings, so
    loading needs no pickle)."""
    if len(vectors) != len(paths):
        raise ValueError(f"{len(vectors)} vectors for {len(paths)} paths")
    np.savez(path, vectors=np.asarray(vectors, np.float32), paths=np.array([str(p) for p in paths], dtype=np.str_))


def load_index(path: Path | str) -> tuple[np.ndarray, list[str]]:
    """(vectors float32 [N, D], paths) of a `save_index` file."""
    with np.load(path, allow_pickle=False) as data:
        return data["vectors"].astype(np.float32), [str(p) for p in data["paths"]]


def rank(index_vectors: np.ndarray, query_vector: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k rows most similar to the query, best first, as (row, score); the
    vectors are L2-normalised, so the dot product is the cosine similarity."""
    if index_vectors.ndim != 2 or index_vectors.shape[1] != query_vector.shape[-1]:
        raise ValueError(f"index vectors {index_vectors.shape} and query {query_vector.shape} differ in width")
    scores = index_vectors @ query_vector
    order = np.argsort(-scores, kind="stable")[: max(k, 0)]
    return [(int(row), float(scores[row])) for row in order]


def print_hits(paths: list[str], hits: list[tuple[int, float]]) -> None:
    for row, score in hits:
        print(json.dumps({"path": paths[row], "score": score}), flush=True)


def build_index(args) -> int:
    files = picture_files(args.folders)
    if not files:
        print(f"no picture files ({' '.join(PICTURE_SUFFIXES)}) in {' '.join(map(str, args.folders))}", file=sys.stderr)
        return 1
    module, client = connect(args.url, args.protocol, concurrency=args.concurrency, tls=tls_from_args(args))
    bar = ProgressBar(len(files), label="index ")
    try:
        embedded = embed_images(client, module, files, args.concurrency, progress=bar)
    finally:
        bar.close()
        client.close()
    for index, message in sorted(embedded.errors.items()):
        print(f"skipped {files[index]}: {message}", file=sys.stderr)
    if embedded.indices:
        save_index(args.out, embedded.vectors, [files[i] for i in embedded.indices])
    print(f"indexed {len(embedded.indices)} of {len(files)} pictures -> {args.out}", file=sys.stderr)
    return 1 if embedded.errors or not embedded.indices else 0


def search_index(args) -> int:
    vectors, paths = load_index(args.index)
    module, client = connect(args.url, args.protocol, tls=tls_from_args(args))
    try:
        if args.command == "search":
            query = embed_texts(client, module, [args.query])[0]
        else:
            embedded = embed_images(client, module, [args.image])
            if embedded.errors:
                print(f"{args.image}: {embedded.errors[0]}", file=sys.stderr)
                return 1
            query = embedded.vectors[0]
    finally:
        client.close()
    print_hits(paths, rank(vectors, query, args.top_k))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    index_cmd = sub.add_parser("index", help="embed the pictures of folders into an .npz index")
    index_cmd.add_argument("folders", nargs="+", type=Path, help="folders (searched recursively) or picture files")
    index_cmd.add_argument("--out", type=Path, required=True, help="the .npz index to write")
    index_cmd.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    search_cmd = sub.add_parser("search", help="rank the indexed pictures against a text")
    search_cmd.add_argument("index", type=Path)
    search_cmd.add_argument("query")
    similar_cmd = sub.add_parser("similar", help="rank the indexed pictures against a picture")
    similar_cmd.add_argument("index", type=Path)
    similar_cmd.add_argument("image", type=Path)
    for cmd in (search_cmd, similar_cmd):
        cmd.add_argument("--top-k", type=int, default=5)
    add_connection_arguments(parser, subcommands=(index_cmd, search_cmd, similar_cmd))
    args = parser.parse_args(argv)
    return build_index(args) if args.command == "index" else search_index(args)


if __name__ == "__main__":
    sys.exit(main())
