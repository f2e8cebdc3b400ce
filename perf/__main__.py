"""`python -m perf [SUITE ...]` (make perf): start a server, run each suite,
print its tables and write perf/results/<suite>.md and <suite>.png."""

from __future__ import annotations

import argparse
import importlib
import shlex
from pathlib import Path

from perf.report import RESULTS_DIR, write
from tools.runtime.server import TritonServer

SUITES = ["datatypes", "text_embedding", "ocr", "orientation", "vit", "clip", "stable_diffusion"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("suites", nargs="*", default=SUITES, help=f"default: {' '.join(SUITES)}")
    parser.add_argument("--concurrency", default="1,2,4,8", help="comma-separated concurrency levels")
    parser.add_argument("--quick", action="store_true", help="short measurement windows (a smoke run)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    given = argv if argv is not None else __import__("sys").argv[1:]
    command = f'make perf PERF_ARGS="{shlex.join(given)}"' if given else "make perf"
    with TritonServer() as server:
        for name in args.suites:
            suite = importlib.import_module(f"perf.{name}")
            report = suite.run(server, concurrencies, quick=args.quick)
            print(f"\n## {name}\n\n{report.markdown()}\n", flush=True)
            for path in write(name, report, command, args.results_dir):
                print(f"wrote {path}")


if __name__ == "__main__":
    main()
