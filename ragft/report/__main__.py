"""`python -m ragft.report results/<experiment> [results/<other> ...]`: rebuild an experiment's table and
report, or compare the runs of several experiments in one report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ragft.report.render import write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ragft.report", description=__doc__)
    parser.add_argument("exp_dirs", type=Path, nargs="+", help="experiment folder(s), e.g. results/medical_reports")
    parser.add_argument(
        "--baseline", help="run label to compare every run against (default: zero_shot, else the first)"
    )
    parser.add_argument(
        "--out", type=Path, help="where a comparison of several experiments goes (default: results/<a>_vs_<b>)"
    )
    args = parser.parse_args(argv)
    for folder in args.exp_dirs:
        if not folder.is_dir():
            print(f"ragft.report: error: '{folder}' is not a folder", file=sys.stderr)
            return 2
    first, *others = (folder.resolve() for folder in args.exp_dirs)  # "." names the folder it is
    try:
        written = write_report(first, args.baseline, compare=others, out_dir=args.out)
    except ValueError as err:
        print(f"ragft.report: error: {err}", file=sys.stderr)
        return 2
    if not written:
        print(f"ragft.report: error: no run records in {', '.join(map(str, args.exp_dirs))}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
