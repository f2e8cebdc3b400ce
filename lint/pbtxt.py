"""Reading and editing model configs (config.pbtxt), the one place that does.

Reading goes through Triton's own protobuf schema (the model_config_pb2 that
tritonclient ships). Edits change the text in place (the exports set a
tensor's dims for a checkpoint of another size, the sweeps an instance count
or a parameter), so the comments of a committed config stay where they are."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping, Sequence

from google.protobuf import json_format, text_format

try:
    from tritonclient.grpc import model_config_pb2 as mc  # Triton's own config schema (in a try: a clear message)
except ImportError as error:  # pragma: no cover - dev requirement
    raise SystemExit("reading model configs needs tritonclient[grpc] (requirements/dev.txt)") from error


def parse(text: str):
    """config text -> inference.ModelConfig (google.protobuf ParseError when invalid)."""
    return text_format.Parse(text, mc.ModelConfig())


def as_json(config) -> dict:
    """A ModelConfig as the dict Triton hands a Python model (args["model_config"])."""
    return json.loads(json_format.MessageToJson(config, preserving_proto_field_name=True))


def to_text(config) -> str:
    return text_format.MessageToString(config)


def _dims_text(dims: Sequence[int]) -> str:
    return "[ " + ", ".join(str(int(d)) for d in dims) + " ]"


def set_tensor_dims(text: str, tensor: str, dims: Sequence[int]) -> str:
    """`dims` of the input/output named `tensor` replaced (ValueError when
    the config declares no such tensor)."""
    pattern = re.compile(r'(\{\s*name:\s*"' + re.escape(tensor) + r'"[^{}]*?dims:\s*)\[[^\]]*\]')
    updated, count = pattern.subn(lambda m: m.group(1) + _dims_text(dims), text)
    if count == 0:
        raise ValueError(f"no tensor named {tensor!r} with dims in this config")
    return updated


def set_instance_count(text: str, count: int) -> str:
    """The count of the config's one instance_group entry."""
    updated, n = re.subn(r"(instance_group\s*\[\s*\{[^{}]*?count:\s*)\d+", rf"\g<1>{int(count)}", text)
    if n != 1:
        raise ValueError(f"expected one instance_group entry with a count, found {n}")
    return updated


def set_parameter(text: str, key: str, value: str) -> str:
    """`parameters { key: KEY value: { string_value: VALUE } }`, replaced or appended."""
    entry = f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}'
    pattern = re.compile(r'parameters\s*\{\s*key:\s*"' + re.escape(key) + r'"\s*value:\s*\{[^{}]*\}\s*\}')
    updated, n = pattern.subn(entry, text)
    if n > 1:
        raise ValueError(f"parameter {key!r} is set {n} times")
    return updated if n else text.rstrip("\n") + "\n" + entry + "\n"


def edit_config(
    path: Path,
    dims: Mapping[str, Sequence[int]] | None = None,
    instance_count: int | None = None,
    parameters: Mapping[str, str] | None = None,
    log=print,
) -> bool:
    """Apply the edits to a config file; write it (and say so) only when it changed."""
    text = Path(path).read_text()
    updated = text
    for tensor, tensor_dims in (dims or {}).items():
        updated = set_tensor_dims(updated, tensor, tensor_dims)
    if instance_count is not None:
        updated = set_instance_count(updated, instance_count)
    for key, value in (parameters or {}).items():
        updated = set_parameter(updated, key, value)
    parse(updated)  # an edit never leaves an invalid config behind
    if updated == text:
        return False
    if Path(path).is_symlink():  # a linked copy of a repository: write a file of its own
        Path(path).unlink()
    Path(path).write_text(updated)
    what = [f"{t} {_dims_text(d)}" for t, d in (dims or {}).items()]
    what += [f"instance count {instance_count}"] if instance_count is not None else []
    what += [f"{k}={v}" for k, v in (parameters or {}).items()]
    log(f"{path}: set " + ", ".join(what))
    return True
