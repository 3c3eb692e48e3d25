"""Write an experiment's report.md from its run records (never from the configs that made them).

python -m ragft.report results/<experiment>
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from ragft.record import write_table
from ragft.report.tables import (
    baseline_comparison,
    category_table,
    config_differences,
    cost_table,
    default_baseline,
    leaderboard,
    load_records,
    read_predictions,
    run_label,
)

N_EXAMPLES = 3
PRIMARY_METRICS = ("field_accuracy", "exact_match", "rouge_l", "token_f1")


def cell(value: Any) -> str:
    """Markdown-safe table cell: HTML escaped, pipes escaped, newlines as <br>."""
    return html.escape(str(value), quote=False).replace("|", "\\|").replace("\n", "<br>")


def markdown_table(frame: pd.DataFrame, index_name: str = "") -> str:
    if frame.empty:
        return "_(none)_"
    header = [index_name, *map(str, frame.columns)]
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    for index, row in frame.iterrows():
        lines.append("| " + " | ".join(cell(v) for v in [index, *row.tolist()]) + " |")
    return "\n".join(lines)


def primary_metric(records: Sequence[dict[str, Any]]) -> str:
    names = {n for r in records for n in r["metrics"]}
    return next((m for m in PRIMARY_METRICS if m in names), sorted(names)[0])


def example_rows(records: Sequence[dict[str, Any]], n: int = N_EXAMPLES) -> list[dict[str, Any]]:
    """The first `n` test examples (of the first run) with every run's output for the same example id."""
    per_run = {run_label(r, records): {p["id"]: p for p in read_predictions(r)} for r in records}
    first = list(next(iter(per_run.values())).values())[:n]
    return [
        {
            "id": p["id"],
            "input": p["input"],
            "reference": p["reference"],
            "outputs": {label: preds[p["id"]]["output"] for label, preds in per_run.items() if p["id"] in preds},
        }
        for p in first
    ]


def render_markdown(exp_dir: Path, records: Sequence[dict[str, Any]], baseline: str | None = None) -> str:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ragft.report", "."),
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["cell"] = cell
    labels = [run_label(r, records) for r in records]
    baseline = baseline or default_baseline(records)
    if baseline not in labels:
        raise ValueError(f"baseline '{baseline}' is not one of the runs: {labels}")
    metric = primary_metric(records)
    return env.get_template("report.md.j2").render(
        exp=exp_dir.name,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        n_runs=len(records),
        task=", ".join(sorted({r["run"]["task"] for r in records})),
        generator=", ".join(sorted({r["run"]["generator"] for r in records})),
        embedder=", ".join(sorted({r["run"]["embedder"] for r in records})),
        n_test=max(r["metrics"][metric]["n"] for r in records if metric in r["metrics"]),
        primary=metric,
        metric_names={n for r in records for n in r["metrics"]},
        leaderboard=markdown_table(leaderboard(records), "run"),
        baseline=baseline,
        versus=markdown_table(baseline_comparison(records, baseline), "run") if len(records) > 1 else "",
        fields=markdown_table(leaderboard(records, per_field=True), "run"),
        cost=markdown_table(cost_table(records), "run"),
        categories=markdown_table(category_table(records, metric), "category"),
        examples=example_rows(records),
        config_diff=markdown_table(config_differences(records), "config key"),
        wall=sum(r["run"]["wall_s"] for r in records),
    )


def write_report(exp_dir: Path, baseline: str | None = None) -> list[Path]:
    """Refresh runs.csv / runs.parquet and write report.md; returns the written paths ([] if no runs)."""
    exp_dir = Path(exp_dir)
    write_table(exp_dir)
    records = load_records(exp_dir)
    if not records:
        return []
    path = exp_dir / "report.md"
    tmp = exp_dir / ".report.md.tmp"
    tmp.write_text(render_markdown(exp_dir, records, baseline), encoding="utf-8")
    tmp.replace(path)
    return [path, exp_dir / "runs.csv", exp_dir / "runs.parquet"]
