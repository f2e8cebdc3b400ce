"""The export scripts' command line and records.

Every script takes `--source` (where the weights come from) and
`--output-dir`; the checkpoint exports also `--format`, `--fp16` and
`--checkpoint-dir`. A run into the repository writes a record
(build/exports/<name>.json: source, input fingerprints, files), and a run
without `--source` takes the recorded source, so a re-export (`make export`
after a `git pull`) never replaces a checkpoint the user exported with
`--source` by the default one (a checkpoint export re-exports from the copy it
kept: export/common/checkpoints.py). `--source default` goes back to the
default. A script ends with `done`: its summary printed and recorded."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from export.common.formats import parse_formats
from export.manifest import BY_NAME, REPO_ROOT
from runtime.paths import MODEL_REPOSITORY, checkpoint_dir

DEFAULT_SOURCE = "default"


def recorded(name: str) -> dict | None:
    path = BY_NAME[name].record_path()
    return json.loads(path.read_text()) if path.exists() else None


def recorded_source(name: str) -> str | None:
    """The --source of the last run into the repository (None: the default)."""
    record = recorded(name)
    source = record.get("source") if record else None
    return None if source in (None, DEFAULT_SOURCE) else source


class ExportArguments(argparse.ArgumentParser):
    """The options of export/<name>.py; `parse` resolves the source."""

    def __init__(self, name: str, description: str, default_source: str, checkpoint: bool = False):
        super().__init__(description=description)
        self.export_name = name
        self.add_argument(
            "--source",
            help=f"where the weights come from (default: the source recorded by the last export, else {default_source}; "
            f"'{DEFAULT_SOURCE}' for {default_source})",
        )
        self.add_argument("--output-dir", type=Path, default=MODEL_REPOSITORY, help="model repository (default model_repository/)")
        self.checkpoint = checkpoint
        if checkpoint:
            self.add_argument("--format", default="tensorrt,onnx", help="priority list of tensorrt, onnx (default: tensorrt,onnx)")
            self.add_argument("--fp16", action="store_true", help="build the TensorRT plans with FP16 kernels")
            default_dir = checkpoint_dir(name)
            self.add_argument("--checkpoint-dir", type=Path, default=default_dir, help=f"where the checkpoint used is kept (default {default_dir})")

    def parse(self, argv=None) -> argparse.Namespace:
        args = self.parse_args(argv)
        args.export_name = self.export_name
        args.into_repository = Path(args.output_dir).resolve() == MODEL_REPOSITORY.resolve()
        args.source_recorded = args.source is None and args.into_repository
        if args.source_recorded:
            args.source = recorded_source(self.export_name)
            if args.source is not None:
                print(f"{self.export_name}: re-exporting from the recorded source {args.source!r} (--source default for the default)")
        if args.source == DEFAULT_SOURCE:
            args.source = None
        elif args.source is not None and Path(args.source).exists():
            args.source = str(Path(args.source).resolve())  # recorded so that a run from another folder finds it
        if self.checkpoint:
            try:
                args.formats = parse_formats(args.format)
            except ValueError as error:
                self.error(str(error))
        return args


def write_record(name: str, source: str | None, started: float, notes: str = "") -> Path:
    """The record of a finished run into the repository (see module doc)."""
    export = BY_NAME[name]
    files = [path for path in (*export.outputs, *export.optional) if (REPO_ROOT / path).exists()]
    record = {
        "export": name,
        "source": source or DEFAULT_SOURCE,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.monotonic() - started, 1),
        "files": files,
        "inputs": export.fingerprint(),
        "notes": notes,
    }
    path = export.record_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def finish(args: argparse.Namespace, name: str, started: float, notes: str = "") -> None:
    if args.into_repository:
        write_record(name, args.source, started, notes)


def done(args: argparse.Namespace, started: float, summary: str) -> int:
    """The end of an export that passed its checks: its summary printed and
    recorded; the exit code 0."""
    print(summary)
    finish(args, args.export_name, started, summary)
    return 0
