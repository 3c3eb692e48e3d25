"""The step tables of experiments/data_efficiency.md, made from the committed run folders beside this file:

    python experiments/data_efficiency/steps.py [experiment folder: this one by default]

Each curve is an arm's runs that differ in one setting (training examples, demonstrations k, passages
top_k). For each step along a curve (from one size to the next) and at each number of training examples
between two arms (does one arm beat the other there?), the paired difference of `field_accuracy` on the
same test notes (each note's mean over the seeds where a setting ran at several), its paired-bootstrap 95% interval and a paired permutation test, Holm-adjusted over all
the comparisons printed. "More data stops helping" where a step's gain is no longer significant."""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from itertools import pairwise
from pathlib import Path

from ragft.eval.stats import holm_adjusted, paired_difference
from ragft.report.groups import group_runs, load_runs

HERE = Path(__file__).parent
METRIC = "field_accuracy"
SETTINGS = {  # the curve's axis: the setting its runs vary in
    "training examples": "task.limits.train",
    "demonstrations k": "context.builder.k",
    "passages top_k": "context.builder.top_k",
}
BETWEEN_ARMS = [("lora", "few_shot"), ("lora_rag", "lora"), ("lora_rag", "few_shot")]


def scores_by_run(experiment: Path) -> dict[tuple[str, str, int], dict[str, float]]:
    """(arm, axis, value) -> note id -> the note's score (its mean over the seeds, as the report pools
    them), for every group of runs in `experiment`. A group lies on an axis where its other curve settings
    are at the arm's usual value (the one most of its groups have): few-shot's k=1 run at 220 notes is on
    the k curve, not on the training-examples curve."""
    groups = [
        (group.identity.arm, group.settings, {i: s[METRIC] for i, s in group.per_example.items()})
        for group in group_runs(load_runs(experiment))
    ]
    usual = {
        (arm, key): Counter(repr(s.get(key)) for a, s, _ in groups if a == arm).most_common(1)[0][0]
        for arm, _, _ in groups
        for key in SETTINGS.values()
    }
    placed: dict[tuple[str, str, int], dict[str, float]] = {}
    for arm, settings, notes in groups:
        for axis, key in SETTINGS.items():
            others_usual = all(repr(settings.get(k)) == usual[(arm, k)] for k in SETTINGS.values() if k != key)
            if others_usual and settings.get(key) is not None:
                placed[(arm, axis, int(settings[key]))] = notes
    return placed


def comparisons(runs: dict[tuple[str, str, int], dict[str, float]]) -> list[tuple[str, str, dict]]:
    """(what is compared, on which axis, its paired difference), steps along each curve then arms apart."""
    curves: dict[tuple[str, str], list[int]] = defaultdict(list)
    for arm, axis, value in runs:
        curves[(arm, axis)].append(value)
    made = []
    for (arm, axis), values in sorted(curves.items()):
        for smaller, larger in pairwise(sorted(values)):
            diff = paired_difference(runs[(arm, axis, larger)], runs[(arm, axis, smaller)])
            made.append((f"{arm}: {smaller} → {larger}", axis, diff))
    for candidate, baseline in BETWEEN_ARMS:
        for value in sorted(curves.get((candidate, "training examples"), [])):
            if value in curves.get((baseline, "training examples"), []):
                diff = paired_difference(
                    runs[(candidate, "training examples", value)], runs[(baseline, "training examples", value)]
                )
                made.append((f"{candidate} − {baseline} at {value}", "training examples", diff))
    return made


def main() -> None:
    made = comparisons(scores_by_run(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE))
    adjusted = holm_adjusted([diff["p_value"] for _, _, diff in made])
    print(f"| comparison | axis | notes | {METRIC} difference [95% CI] | p (Holm) |\n|---|---|---|---|---|")
    for (name, axis, diff), p in zip(made, adjusted):
        print(
            f"| {name} | {axis} | {diff['n']} | {diff['diff']:+.3f} [{diff['ci_low']:+.3f}, {diff['ci_high']:+.3f}] | "
            f"{diff['p_value']:.4f} ({p:.4f}) |"
        )


if __name__ == "__main__":
    main()
