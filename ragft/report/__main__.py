"""`python -m ragft.report results/<experiment> [results/<other> ...]`: rebuild an experiment's table and
report, or compare the runs of several experiments in one report. A folder that cannot be reported stops
the command with one line `ragft.report: error: ...` and exit status 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ragft.errors import RagftError, one_line
from ragft.record.run import RECORD_FILE, run_dirs
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
        try:
            problem = folder_problem(folder)
        except OSError as err:
            problem = f"cannot read '{folder}': {err}"
        if problem is not None:
            return fail(problem)
    first, *others = (folder.resolve() for folder in args.exp_dirs)  # "." names the folder it is
    try:
        written = write_report(first, args.baseline, compare=others, out_dir=args.out)
    except (ValueError, RagftError) as err:
        return fail(str(err))
    except OSError as err:
        return fail(f"cannot write the report: {err}")
    if not written:  # its runs went while it was being read
        return fail(f"no run records in {', '.join(map(str, args.exp_dirs))}")
    for path in written:
        print(path)
    return 0


def folder_problem(folder: Path) -> str | None:
    """Why `folder` is not an experiment folder (one line that says what to name instead), or None."""
    if not folder.exists():
        return f"'{folder}' is not a folder (it does not exist); name an experiment's folder, e.g. results/<experiment>"
    if not folder.is_dir():
        return f"'{folder}' is not a folder; name an experiment's folder, e.g. results/<experiment>"
    if next(run_dirs(folder), None) is not None:
        return None
    if (folder / RECORD_FILE).is_file():
        return f"'{folder}' is one run's folder; name the experiment folder that holds it: '{folder.parent}'"
    inner = sorted(sub.name for sub in folder.iterdir() if sub.is_dir() and next(run_dirs(sub), None) is not None)
    if inner:
        return f"'{folder}' holds experiments, not runs; name one of them, e.g. '{folder / inner[0]}'"
    return f"no run records in '{folder}' (no folder in it holds a {RECORD_FILE}); run an experiment first"


def fail(message: str) -> int:
    print(f"ragft.report: error: {one_line(message)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
