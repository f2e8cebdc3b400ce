"""`python -m lint [REPOSITORY ...]`: exit 1 with one line per finding."""

import argparse
import sys
from pathlib import Path

from lint.checks import custom_config_paths, lint_repository


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Lint Triton model repositories")
    parser.add_argument("repositories", nargs="*", type=Path, default=[Path("model_repository")])
    args = parser.parse_args(argv)
    findings = [f for repo in args.repositories for f in lint_repository(repo)]
    for finding in findings:
        print(finding)
    folders = [p for repo in args.repositories for p in repo.iterdir() if p.is_dir()]
    count = sum(1 for p in folders if (p / "config.pbtxt").exists())
    custom = sum(len(custom_config_paths(p)) for p in folders)
    extra = f" ({custom} custom config{'s' if custom != 1 else ''} in <model>/configs/)" if custom else ""
    print(f"lint: {count} models{extra}, {len(findings)} findings", file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
