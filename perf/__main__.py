"""`python -m perf [SUITE ...]` (make perf): start a server, run each suite,
print its table and save it under perf/results/."""

from __future__ import annotations

import argparse
import importlib

from perf.harness import save
from pipelines.runtime.server import TritonServer

SUITES = ["datatypes", "text_embedding", "ocr", "orientation", "vit", "clip"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("suites", nargs="*", default=SUITES, help=f"default: {' '.join(SUITES)}")
    parser.add_argument("--concurrency", default="1,2,4,8", help="comma-separated concurrency levels")
    parser.add_argument("--quick", action="store_true", help="short measurement windows (a smoke run)")
    args = parser.parse_args(argv)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    with TritonServer() as server:
        for name in args.suites:
            suite = importlib.import_module(f"perf.{name}")
            table = suite.run(server, concurrencies, quick=args.quick)
            print(f"\n## {name}\n\n{table}\n", flush=True)
            print(f"saved {save(name, table)}")


if __name__ == "__main__":
    main()
