"""The tables of experiments/findings.md, made from the committed run folders beside this file:

    python experiments/medical_reports_tuned/knowledge.py

For each arm (its seeds pooled: each note's score averaged over the seeds, as the report does) and each
`knowledge` group of the test notes (`seen`: every protocol fact of the reference occurs in a training
report; `unseen`: one occurs only in the corpus), the mean of a metric with its bootstrap 95% interval;
then the paired differences the findings compare, on the same notes, with their paired-bootstrap
interval and a paired permutation test, Holm-adjusted over the comparisons printed."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ragft.eval.registry import mean_with_ci
from ragft.eval.stats import holm_adjusted, paired_difference
from ragft.record.run import read_predictions, read_runs

HERE = Path(__file__).parent
ARMS = ["majority", "zero_shot", "few_shot", "rag", "oracle_rag", "lora", "lora_rag"]
METRICS = ["protocol_fact_accuracy", "field_accuracy", "format_compliance"]
COMPARISONS = [  # (candidate, baseline, knowledge group, metric): the findings' claims
    ("rag", "lora", "unseen", "protocol_fact_accuracy"),
    ("lora_rag", "lora", "unseen", "protocol_fact_accuracy"),
    ("lora_rag", "rag", "unseen", "protocol_fact_accuracy"),
    ("lora_rag", "rag", "all", "field_accuracy"),
    ("lora", "zero_shot", "all", "format_compliance"),
    ("lora", "few_shot", "all", "format_compliance"),
]


def pooled_scores() -> dict[str, dict[str, dict[str, float]]]:
    """arm -> metric -> note id -> the note's score averaged over the arm's seeds; plus the groups."""
    collected: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for folder, record in read_runs(HERE):
        arm = record.identity.arm
        for row in read_predictions(folder):
            collected[arm]["knowledge"][row["id"]] = [row["breakdowns"]["knowledge"]]
            for metric in METRICS:
                collected[arm][metric][row["id"]].append(row["scores"][metric])
    return {
        arm: {
            metric: {
                note: (values[0] if metric == "knowledge" else float(np.mean(values))) for note, values in notes.items()
            }
            for metric, notes in metrics.items()
        }
        for arm, metrics in collected.items()
    }


def in_group(scores: dict[str, float], knowledge: dict[str, str], group: str) -> dict[str, float]:
    return {note: value for note, value in scores.items() if group == "all" or knowledge[note] == group}


def main() -> None:
    scores = pooled_scores()
    knowledge = scores["lora"]["knowledge"]
    for metric in METRICS:
        print(f"\n{metric}\n| arm | all | seen | unseen |\n|---|---|---|---|")
        for arm in ARMS:
            cells = []
            for group in ("all", "seen", "unseen"):
                values = list(in_group(scores[arm][metric], knowledge, group).values())
                ci = mean_with_ci(values)
                cells.append(f"{ci['mean']:.3f} [{ci['ci_low']:.3f}, {ci['ci_high']:.3f}] (n={len(values)})")
            print(f"| {arm} | " + " | ".join(cells) + " |")
    results = [
        paired_difference(
            in_group(scores[candidate][metric], knowledge, group), in_group(scores[baseline][metric], knowledge, group)
        )
        for candidate, baseline, group, metric in COMPARISONS
    ]
    adjusted = holm_adjusted([r["p_value"] for r in results])
    print("\n| comparison | notes | metric | difference [95% CI] | p (Holm) |\n|---|---|---|---|---|")
    for (candidate, baseline, group, metric), result, p in zip(COMPARISONS, results, adjusted):
        print(
            f"| {candidate} − {baseline} | {group} (n={result['n']}) | {metric} | "
            f"{result['diff']:+.3f} [{result['ci_low']:+.3f}, {result['ci_high']:+.3f}] | "
            f"{result['p_value']:.4f} ({p:.4f}) |"
        )


if __name__ == "__main__":
    main()
