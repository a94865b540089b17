"""``python -m grafana.dashgen [--check]``: write grafana/dashboards/*.json, or with
``--check`` only say which committed file the code would change (exit 1)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grafana.dashgen.render import DASHBOARDS_DIR, stale, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grafana.dashgen", description=__doc__)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 naming each file that is not what the "
                             "code generates")
    parser.add_argument("--dir", type=Path, default=DASHBOARDS_DIR,
                        help="the dashboards directory (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale(args.dir)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("regenerate with: python -m grafana.dashgen", file=sys.stderr)
        return 1 if problems else 0
    for path in write(args.dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
