"""`python -m perf [SUITE ...]` (make perf): start a server, run each suite,
print its tables and write perf/results/<suite>.md and <suite>.png."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import shlex
from pathlib import Path

from perf.report import RESULTS_DIR, write
from perf.harness import benchmark_server

SUITES = ["datatypes", "text_embedding", "ocr", "orientation", "vit", "clip", "stable_diffusion"]
# measured on request only (servers or processes of their own): make perf PERF_ARGS=engines, PERF_ARGS=ui
EXTRA_SUITES = ["engines", "ui"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("suites", nargs="*", default=SUITES, help=f"default: {' '.join(SUITES)}; also: {' '.join(EXTRA_SUITES)}")
    parser.add_argument("--concurrency", default="1,2,4,8", help="comma-separated concurrency levels")
    parser.add_argument("--quick", action="store_true", help="short measurement windows (a smoke run)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    given = argv if argv is not None else __import__("sys").argv[1:]
    command = f'make perf PERF_ARGS="{shlex.join(given)}"' if given else "make perf"
    suites = {name: importlib.import_module(f"perf.{name}") for name in args.suites}
    # suites that start servers of their own (NEEDS_SERVER = False) get none
    needs_server = any(getattr(suite, "NEEDS_SERVER", True) for suite in suites.values())
    with benchmark_server() if needs_server else contextlib.nullcontext() as server:
        for name, suite in suites.items():
            report = suite.run(server, concurrencies, quick=args.quick)
            print(f"\n## {name}\n\n{report.markdown()}\n", flush=True)
            for path in write(name, report, command, args.results_dir):
                print(f"wrote {path}")


if __name__ == "__main__":
    main()
