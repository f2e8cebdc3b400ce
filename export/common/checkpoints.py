"""Where a checkpoint export's weights come from, and the copy it keeps.

The vit, clip and stable_diffusion exports keep the checkpoint they used in
checkpoints/<name>/ (--checkpoint-dir): what the served files are made from
and the reference of the tests and benchmarks. `--source` fills it: a local
folder, or a Hugging Face hub name's snapshot, is copied in (the files the
export uses, nothing else); no source builds the export's seeded checkpoint.

A re-export without --source (make export) takes the source recorded by the
last run (export/common/cli.py) and uses the copy of it kept in
checkpoints/<name>/ as it is: the folder it came from may be gone, and a hub
name needs no second download. Where that copy is missing too, the recorded
source is read again; a folder that is gone fails with a message that names
the export, the folder and the command that exports again."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from huggingface_hub import snapshot_download


def save_seeded(target: Path, seed: int, parts: Callable[[], Iterable]) -> Path:
    """A checkpoint of seeded random weights in `target`: `parts()` is
    called after torch.manual_seed(seed) and each part it gives is saved
    there (anything with `save_pretrained`: a model, an image processor, a
    pipeline; or a function that writes into the folder)."""
    torch.manual_seed(seed)
    target.mkdir(parents=True, exist_ok=True)
    for part in parts():
        if hasattr(part, "save_pretrained"):
            part.save_pretrained(str(target))
        else:
            part(target)
    return target


def copy_checkpoint_files(source: Path, target: Path, kind: str, required: Sequence[str | tuple[str, ...]], optional: Sequence[str] = ()) -> Path:
    """The files and folders of a `kind` checkpoint that an export uses,
    copied from `source` into `target`. An entry of `required` may be a
    tuple of alternatives, of which the first present is copied
    (model.safetensors or pytorch_model.bin); FileNotFoundError names what
    is missing. `optional` entries are copied where present."""
    source = Path(source)
    chosen, missing = [], []
    for entry in required:
        alternatives = (entry,) if isinstance(entry, str) else entry
        present = [name for name in alternatives if (source / name).exists()]
        if present:
            chosen.append(present[0])
        else:
            missing.append(" or ".join(alternatives))
    if missing:
        raise FileNotFoundError(f"{source} is not a {kind} checkpoint: {', '.join(missing)} missing")
    target.mkdir(parents=True, exist_ok=True)
    for name in [*chosen, *(name for name in optional if (source / name).exists())]:
        if (source / name).is_dir():
            shutil.copytree(source / name, target / name)
        else:
            shutil.copy2(source / name, target / name)
    return target


def looks_like_a_path(source: str) -> bool:
    """Not a hub name (`name` or `owner/name`): an absolute or explicitly
    relative path, or one of more than two parts."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source


def source_gone(export: str, source: str, kept: Path | None) -> SystemExit:
    """The failure of a re-export whose recorded source folder is gone."""
    copy = f", and the copy of it kept in {kept} is missing too" if kept is not None else " (no copy of it is kept)"
    return SystemExit(
        f"export {export}: the recorded source {source} is gone{copy}. Export again from a folder or hub name: "
        f"python export/{export}.py --source <folder or hub name>; or from the default: python export/{export}.py --source default"
    )


def local_folder(args: argparse.Namespace, kept: Path | None = None) -> Path:
    """`args.source` as a folder: a folder as it is, or a Hugging Face hub
    name's snapshot (downloaded, or from the hub cache: HF_HUB_CACHE,
    HF_HUB_OFFLINE=1). A path that is no folder fails with a message that
    says what to run (a recorded one: `source_gone`)."""
    source = args.source
    if Path(source).expanduser().is_dir():
        return Path(source).expanduser()
    if looks_like_a_path(source):
        if args.source_recorded:
            raise source_gone(args.export_name, source, kept)
        raise SystemExit(f"export {args.export_name}: --source {source}: no such folder")
    try:
        return Path(snapshot_download(source))
    except Exception as error:  # the hub's own errors: offline, unknown name, invalid name
        raise SystemExit(f"export {args.export_name}: --source {source!r} is no folder, and the hub gave no snapshot of it: {error}") from None


def fill_checkpoint(args: argparse.Namespace, seeded: Callable[[Path], object], copy: Callable[[Path, Path], object], seeded_name: str) -> str:
    """Put the checkpoint of an export in `args.checkpoint_dir` (see the
    module doc): `seeded(target)` without a source, `copy(folder, target)`
    from a source, nothing on a re-export whose kept copy is there. Returns
    where it came from."""
    source, target = args.source, Path(args.checkpoint_dir)
    if source is not None and Path(source).is_dir() and Path(source).resolve() == target.resolve():
        return source  # the kept checkpoint named as the source
    if source is not None and args.source_recorded and target.is_dir() and any(target.iterdir()):
        print(f"{args.export_name}: using {target}, the copy kept of the recorded source {source!r}")
        return source
    folder = None if source is None else local_folder(args, kept=target)  # before the kept copy goes: a source may fail
    if target.exists():
        shutil.rmtree(target)
    if folder is None:
        seeded(target)
        return seeded_name
    copy(folder, target)
    return source
