"""Each preference arm against its own SFT arm (dpo and orpo against lora, dpo_rag and orpo_rag against
lora_rag) on the strict scores, from the committed predictions: the mean per-example difference, its
paired-bootstrap 95% interval and the paired permutation test's p-value, Holm-adjusted over the whole
family. The report compares every arm with `lora` only; this is the comparison with retrieval too.

    python experiments/preference/against_sft.py      # writes experiments/preference/against_sft.json
"""

from __future__ import annotations

import json
from pathlib import Path

from ragft.eval.stats import holm_adjusted, paired_difference

HERE = Path(__file__).parent
METRICS = ("field_accuracy", "protocol_fact_accuracy", "hedge_rate")
AGAINST = {"dpo": "lora", "orpo": "lora", "dpo_rag": "lora_rag", "orpo_rag": "lora_rag"}


def per_example(arm: str, metric: str) -> dict[str, float]:
    """The arm's score on `metric` for each test example (its one run folder's predictions)."""
    (run,) = HERE.glob(f"{arm}-*/predictions.jsonl")
    rows = [json.loads(line) for line in run.read_text(encoding="utf-8").splitlines()]
    return {row["id"]: row["scores"][metric] for row in rows if metric in row["scores"]}


def comparisons() -> list[dict]:
    found = []
    for arm, sft in AGAINST.items():
        for metric in METRICS:
            difference = paired_difference(per_example(arm, metric), per_example(sft, metric))
            found.append({"arm": arm, "against": sft, "metric": metric, **difference})
    for row, adjusted in zip(found, holm_adjusted([row["p_value"] for row in found])):
        row["p_holm"] = adjusted
    return found


if __name__ == "__main__":
    out = HERE / "against_sft.json"
    out.write_text(json.dumps(comparisons(), indent=2) + "\n")
    for row in json.loads(out.read_text()):
        print(
            f"{row['arm']:9} vs {row['against']:9} {row['metric']:23} {row['diff']:+.3f} "
            f"[{row['ci_low']:+.3f}, {row['ci_high']:+.3f}] p={row['p_value']:.4f} Holm {row['p_holm']:.4f}"
        )
