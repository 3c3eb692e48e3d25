"""The README's headline table, made from the committed experiments/medical_reports/runs.csv:

    python experiments/medical_reports/headline.py

tests/test_readme.py checks that the README holds exactly this table, so its figures cannot drift from
the records."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

RUNS = Path(__file__).with_name("runs.csv")
COLUMNS = {  # README header -> runs.csv metric
    "field accuracy": "field_accuracy",
    "protocol facts (drug, dose, follow-up, referral)": "protocol_fact_accuracy",
    "hedge rate": "hedge_rate",
}


def with_ci(row: pd.Series, metric: str) -> str:
    if metric not in row or pd.isna(row[metric]):
        return "–"
    return f"{row[metric]:.3f} [{row[f'{metric}_ci_low']:.3f}, {row[f'{metric}_ci_high']:.3f}]"


def training(row: pd.Series) -> str:
    seconds = row.get("cost_train_s")
    return "–" if pd.isna(seconds) or not seconds else f"{seconds:.0f} s"


def headline(runs: Path = RUNS) -> str:
    """The table as Markdown: one row per finished run, in the table's order."""
    frame = pd.read_csv(runs)
    frame = frame[frame["status"] == "finished"]
    lines = [
        "| arm | " + " | ".join(COLUMNS) + " | prompt tokens | training |",
        "|---" * (len(COLUMNS) + 3) + "|",
    ]
    for _, row in frame.iterrows():
        cells = [with_ci(row, metric) for metric in COLUMNS.values()]
        tokens = f"{row['cost_prompt_tokens_mean']:.0f}"
        lines.append(f"| {row['arm']} | " + " | ".join(cells) + f" | {tokens} | {training(row)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(headline() + "\n")
