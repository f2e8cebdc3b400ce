"""How many instances should a model run? Serve a copy of the repository
with the model's instance_group count set to each value in turn, and measure
an entry model with perf_analyzer at the given concurrencies (real inputs).

    python -m perf.instance_sweep image_decode --counts 1,2,4 --entry clip_image_embedding --concurrency 4,8

The copy links every file of model_repository/ (nothing is duplicated) and
rewrites only the swept model's config.pbtxt. Prints one table."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from perf.harness import benchmark_server, picture_inputs, run_perf_analyzer
from perf.report import Table
from runtime.paths import MODEL_REPOSITORY
from lint.pbtxt import edit_config
from testsets.images import photo_samples


def linked_copy(source: Path, target: Path) -> Path:
    """`source` as a tree of symlinks to its files."""
    shutil.copytree(source, target, copy_function=os.symlink, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def sweep(model: str, counts: list[int], entry: str, concurrencies: list[int], seconds: float) -> Table:
    pictures = [sample.data for sample in photo_samples()]
    scratch = Path(tempfile.mkdtemp(prefix="perf-sweep-"))
    data = picture_inputs(pictures, "sweep")
    rows = []
    for count in counts:
        repository = linked_copy(MODEL_REPOSITORY, scratch / f"repository-{count}")
        edit_config(repository / model / "config.pbtxt", instance_count=count)
        with benchmark_server([repository]) as server:
            for c in concurrencies:
                rows.append(run_perf_analyzer(entry, server.http_url, c, data, measurement_ms=int(seconds * 1000), label=f"{entry}, {model} x{count}"))
        shutil.rmtree(repository)
    return Table(f"{entry} with {model} at {counts} instances", "images", rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model whose instance count is swept")
    parser.add_argument("--counts", default="1,2,4")
    parser.add_argument("--entry", required=True, help="model perf_analyzer drives (takes input_image)")
    parser.add_argument("--concurrency", default="4,8")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args(argv)
    table = sweep(args.model, [int(c) for c in args.counts.split(",")], args.entry, [int(c) for c in args.concurrency.split(",")], args.seconds)
    print(table.markdown())


if __name__ == "__main__":
    main()
