"""CLIP's real tokenizer without a hub: its 49408-token vocabulary and 48894
merges rebuilt from the BPE merges file that open_clip ships
(`bpe_simple_vocab_16e6.txt.gz`), in the order OpenAI's CLIP builds them,
then saved by transformers' CLIPTokenizer. Used by the CLIP export and the
Stable Diffusion export (SD 1.x's text encoder is CLIP's)."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

CONTEXT_LENGTH = 77
VOCAB_SIZE = 49408
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def bpe_merges_path() -> Path:
    """open_clip's BPE merges file (found without importing open_clip, which
    would import torchvision)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("open_clip is not installed: pip install --no-deps open-clip-torch (requirements/nodeps.txt)")
    path = Path(next(iter(spec.submodule_search_locations))) / BPE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed open_clip package")
    return path


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible byte -> printable character table, in its
    own order (printable bytes first, the others mapped above 255)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def vocabulary(merges_path: Path | None = None) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary and merges as OpenAI's SimpleTokenizer builds them:
    the 256 byte characters, the same with '</w>', one token per merge (the
    first 48894 merge lines after the header), then the start and end tokens."""
    lines = gzip.open(merges_path or bpe_merges_path()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : VOCAB_SIZE - 256 * 2 - 2 + 1]]
    base = list(bytes_to_unicode().values())
    tokens = base + [c + "</w>" for c in base] + ["".join(m) for m in merges] + [BOS, EOS]
    if len(tokens) != VOCAB_SIZE or len(set(tokens)) != VOCAB_SIZE:
        raise ValueError(f"rebuilt {len(tokens)} tokens ({len(set(tokens))} distinct), expected {VOCAB_SIZE}")
    return {token: index for index, token in enumerate(tokens)}, merges


def build_tokenizer(target: Path):
    """transformers' CLIPTokenizer on the rebuilt vocabulary, saved to
    `target` (tokenizer.json, tokenizer_config.json, ...); returns it."""
    # here: transformers takes seconds to import, and the importers of the
    # constants above (the CLIP tests) need none of it
    from transformers import CLIPTokenizer

    vocab, merges = vocabulary()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=CONTEXT_LENGTH)
    target.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(target))
    return tokenizer
