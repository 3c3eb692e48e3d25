"""`python -m ragft.decide <experiment folder> [constraint=value ...]`: the arm to deploy under a team's
constraints, with its reasons, read from the experiment's run records only.

Constraints (any subset; none: the best arm on quality):
  max_latency_s=5         one request alone (batch 1), 95th percentile, seconds
  max_memory_gb=2         serving peak memory (the generation stretch's; CUDA's where recorded)
  max_storage_mb=100      stored per task: adapter or model copy, plus the retrieval index
  max_train_minutes=30    to train the arm once (generator and retriever)
  updates_per_month=4     knowledge changes to absorb (re-train, or re-embed and re-index, each time)
  max_update_minutes=60   per month, for those updates
  min_quality=0.6         the primary metric's mean

Ties are arms whose difference from the best on the same test examples is not significant (paired
permutation test, Holm-adjusted); floors and ceilings (majority, oracle passages) are never recommended.
Exit status 0 with a recommendation, 1 when no arm meets the constraints, 2 for bad input.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from ragft.cli import interruptible
from ragft.errors import RagftError, one_line
from ragft.report.decision import Constraints, Decision, decide
from ragft.report.groups import group_runs, load_runs, primary_metric


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or {"-h", "--help"} & set(args):
        print(__doc__)
        return 0 if args else 2
    folder, assignments = Path(args[0]), args[1:]
    try:
        decision = decision_for(folder, Constraints.parse(assignments))
    except RagftError as err:
        print(f"ragft.decide: error: {one_line(err)}", file=sys.stderr)
        return 2
    print("\n".join(decision.lines()))
    return 0 if decision.best is not None else 1


def decision_for(folder: Path, constraints: Constraints) -> Decision:
    """The decision over the finished runs recorded in `folder`."""
    if not folder.is_dir():
        raise RagftError(f"'{folder}' is not a folder: name an experiment's folder, e.g. results/medical_reports")
    groups = group_runs(load_runs(folder))
    if not groups:
        raise RagftError(f"'{folder}' holds no finished run: run the experiment first")
    return decide(groups, primary_metric(groups), constraints)


if __name__ == "__main__":
    sys.exit(interruptible(main))
