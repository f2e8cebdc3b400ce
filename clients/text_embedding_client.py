"""Client for `text_embedding` (and `text2ids`).

    python clients/text_embedding_client.py embed "first text" "second text" [--url URL] [--protocol http|grpc]
    python clients/text_embedding_client.py search SENTENCES.txt "query" [--top-k 5]
    python clients/text_embedding_client.py ids "hello world"

`search` embeds every line of the file (in batches), then ranks the lines by
cosine similarity to the query: a small semantic-search demo.
As a library: `TextEmbeddingClient(url, protocol).embed(texts)` -> float32 [N, D]."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from clients.common import Tls, add_connection_arguments, connect, tls_from_args, make_inputs, make_outputs

MAX_BATCH = 64  # text_embedding's max_batch_size


class TextEmbeddingClient:
    def __init__(self, url: str | None = None, protocol: str = "http", tls: Tls | None = None):
        self.module, self.client = connect(url, protocol, tls=tls)

    def embed(self, texts: list[str], batch_size: int = MAX_BATCH) -> np.ndarray:
        parts = []
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            tensor = np.array([[t.encode("utf-8")] for t in chunk], dtype=np.object_)
            result = self.client.infer(
                "text_embedding", make_inputs(self.module, {"text": tensor}), outputs=make_outputs(self.module, ["embedding"])
            )
            parts.append(result.as_numpy("embedding"))
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    def ids(self, text: str) -> list[int]:
        tensor = np.array([text.encode("utf-8")], dtype=np.object_)
        return self.client.infer("text2ids", make_inputs(self.module, {"text": tensor})).as_numpy("ids").tolist()


def search(client: TextEmbeddingClient, sentences: list[str], query: str, top_k: int) -> list[tuple[float, str]]:
    index = client.embed(sentences)
    scores = index @ client.embed([query])[0]  # embeddings are L2-normalised: dot = cosine
    order = np.argsort(-scores)[:top_k]
    return [(float(scores[i]), sentences[i]) for i in order]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    embed_cmd = sub.add_parser("embed", help="print the embedding of each text as JSON")
    embed_cmd.add_argument("texts", nargs="+")
    search_cmd = sub.add_parser("search", help="rank the lines of a text file against a query")
    search_cmd.add_argument("sentences", type=Path, help="text file, one sentence per line")
    search_cmd.add_argument("query")
    search_cmd.add_argument("--top-k", type=int, default=5)
    ids_cmd = sub.add_parser("ids", help="text2ids: vocabulary ids of the words of a text")
    ids_cmd.add_argument("text")
    add_connection_arguments(parser, subcommands=(embed_cmd, search_cmd, ids_cmd))
    args = parser.parse_args(argv)

    client = TextEmbeddingClient(args.url, args.protocol, tls=tls_from_args(args))
    if args.command == "embed":
        vectors = client.embed(args.texts)
        print(json.dumps([{"text": t, "embedding": [round(float(v), 6) for v in vec]} for t, vec in zip(args.texts, vectors)]))
    elif args.command == "search":
        sentences = [line for line in args.sentences.read_text(encoding="utf-8").splitlines() if line.strip()]
        for score, sentence in search(client, sentences, args.query, args.top_k):
            print(f"{score:.4f}  {sentence}")
    else:
        print(json.dumps(client.ids(args.text)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
