"""`python -m ragft.report results/<experiment>`: rebuild the table and report of an experiment."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ragft.report.render import write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ragft.report", description=__doc__)
    parser.add_argument("exp_dir", type=Path, help="an experiment folder, e.g. results/medical_reports")
    parser.add_argument(
        "--baseline", help="run label to compare every run against (default: zero_shot, else the first)"
    )
    args = parser.parse_args(argv)
    if not args.exp_dir.is_dir():
        print(f"ragft.report: error: '{args.exp_dir}' is not a folder", file=sys.stderr)
        return 2
    try:
        written = write_report(args.exp_dir, args.baseline)
    except ValueError as err:
        print(f"ragft.report: error: {err}", file=sys.stderr)
        return 2
    if not written:
        print(f"ragft.report: error: no finished runs in '{args.exp_dir}'", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
