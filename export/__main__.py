"""`python -m export [NAME ...]` (make export): run the exports whose outputs
are missing or out of date, each from its recorded source.

    python -m export              every export that is not current
    python -m export vit --force  re-run one even when it is current
    python -m export --list       what each export produces and its state
    python -m export --clean      remove every output and record (make clean)

Standard library only at import: --clean and --list work without the venv."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from export.manifest import BY_NAME, EXPORTS, RECORDS_DIR, REPO_ROOT, Export


def record_of(export: Export, root: Path = REPO_ROOT) -> dict | None:
    path = export.record_path(root)
    return json.loads(path.read_text()) if path.exists() else None


def why_stale(export: Export, root: Path = REPO_ROOT) -> str | None:
    """Why `export` must run, or None when its outputs are current."""
    record = record_of(export, root)
    missing = export.missing_outputs(root) + [p for p in (record or {}).get("files", []) if not (root / p).exists()]
    if missing:
        return f"missing {', '.join(dict.fromkeys(missing))}"
    if record is None:
        return "no record of an earlier run"
    before, now = record.get("inputs", {}), export.fingerprint(root)
    changed = sorted(path for path in set(before) | set(now) if before.get(path) != now.get(path))
    return f"changed {', '.join(changed)}" if changed else None


def source_of(export: Export, root: Path = REPO_ROOT) -> str:
    return (record_of(export, root) or {}).get("source", "default")


def run(export: Export) -> None:
    print(f"export {export.name}: python {export.script.relative_to(REPO_ROOT)}", flush=True)
    done = subprocess.run([sys.executable, str(export.script)], cwd=REPO_ROOT)
    if done.returncode != 0:
        raise SystemExit(f"export {export.name} failed (exit code {done.returncode})")


def clean(root: Path = REPO_ROOT) -> int:
    """Remove every declared and recorded output and the records; the count removed."""
    removed = 0
    for export in EXPORTS:
        recorded = (record_of(export, root) or {}).get("files", [])
        for relative in dict.fromkeys([*export.outputs, *export.optional, *recorded]):
            path = root / relative
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            else:
                continue
            removed += 1
            if path.parent.name == "configs" and not any(path.parent.iterdir()):  # a folder an export made
                path.parent.rmdir()
        export.record_path(root).unlink(missing_ok=True)
    records = root / RECORDS_DIR.relative_to(REPO_ROOT)
    if records.is_dir() and not any(records.iterdir()):
        records.rmdir()
    return removed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"exports to consider (default all: {' '.join(BY_NAME)})")
    parser.add_argument("--force", action="store_true", help="run them even when current")
    parser.add_argument("--list", action="store_true", help="print each export's outputs and state, run nothing")
    parser.add_argument("--clean", action="store_true", help="remove every exported file and record")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BY_NAME]
    if unknown:
        parser.error(f"unknown exports {unknown}; known: {', '.join(BY_NAME)}")
    if args.clean:
        print(f"removed {clean()} exported files and folders, and the export records")
        return 0
    for export in [BY_NAME[name] for name in args.names] if args.names else EXPORTS:
        reason = "--force" if args.force else why_stale(export)
        if args.list:
            print(f"{export.name}: {'stale (' + reason + ')' if reason else 'current'}; source {source_of(export)}")
            for output in (*export.outputs, *export.optional):
                print(f"  {output}{'' if (REPO_ROOT / output).exists() else ' (absent)'}")
        elif reason is None:
            print(f"export {export.name}: current (source {source_of(export)})")
        else:
            print(f"export {export.name}: {reason}")
            run(export)
            still = why_stale(export)
            if still:
                raise SystemExit(f"export {export.name} ran but is not current: {still}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
