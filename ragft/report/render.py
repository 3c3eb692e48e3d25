"""Write an experiment's report.md and a self-contained report.html from its run records (never from
the configs that made them).

python -m ragft.report results/<experiment> [results/<other experiment> ...]
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup

from ragft.record.run import RunRecord
from ragft.record.table import write_table
from ragft.report import notes
from ragft.report.adaptation import base_group, methods_table, other_tests_table, stage_tables
from ragft.report.costs import cost_table
from ragft.report.groups import (
    LoadedRun,
    RunGroup,
    default_baseline,
    group_runs,
    headline_metrics,
    load_runs,
    primary_metric,
)
from ragft.report.plots import metrics_plot, quality_cost_plot
from ragft.report.tables import (
    baseline_table,
    breakdown_tables,
    category_table,
    comparisons,
    config_differences,
    failed_table,
    leaderboard,
    leakage_table,
    retrieval_table,
)

N_EXAMPLES = 3
CATEGORY_SETTING = "task.data.fields.category"  # the data field a task reads as each example's category


@dataclass
class Report:
    """Everything both renderings show, computed once."""

    title: str
    groups: list[RunGroup]
    baseline: str
    primary: str
    tables: dict[str, pd.DataFrame]
    examples: list[dict[str, Any]]
    figures: dict[str, bytes] = field(default_factory=dict)
    stages: dict[str, pd.DataFrame] = field(default_factory=dict)  # per sequentially trained run
    records: list[RunRecord] = field(default_factory=list)  # every run, finished or failed
    failed: list[RunRecord] = field(default_factory=list)
    breakdowns: dict[str, pd.DataFrame] = field(default_factory=dict)  # primary metric by knowledge, ...

    @property
    def base_label(self) -> str:
        base = base_group(self.groups)
        return base.label if base else "the base model"

    @property
    def metric_names(self) -> set[str]:
        return {n for g in self.groups for n in g.scores}

    def summary(self) -> dict[str, Any]:
        records = [record for g in self.groups for record in g.records]
        identities = [record.identity for record in self.records]  # failed runs name their task too
        scored = [g.scores[self.primary].n for g in self.groups if self.primary in g.scores]
        return {
            "title": self.title,
            "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "n_runs": len(records),
            "n_groups": len(self.groups),
            "n_failed": len(self.failed),
            "task": _names(i.task for i in identities),
            "generator": _names(i.generator for i in identities),
            "embedder": _names(i.embedder for i in identities),
            "n_test": max(scored, default=0),
            "wall": sum(float(record.provenance.get("wall_s", 0.0)) for record in records),
            "primary": self.primary,
            "category_field": _category_field(self.groups),
            "baseline": self.baseline,
            "metric_names": self.metric_names,
            "multi_seed": any(len(g.runs) > 1 for g in self.groups),
            "examples": self.examples,
            "shown": {name: not frame.empty for name, frame in self.tables.items()},
            "notes": {
                k: v.format(baseline=self.baseline, primary=self.primary, base=self.base_label)
                for k, v in notes.SECTIONS.items()
            },
            "metric_notes": [text for name, text in notes.METRICS.items() if name in self.metric_names],
        }


def _names(values: Iterable[str | None]) -> str:
    """The distinct names recorded, sorted; "–" where no run records one."""
    return ", ".join(sorted({v for v in values if v})) or "–"


def _category_field(groups: Sequence[RunGroup]) -> str:
    """The data field the task maps to `category` (e.g. specialty), as the breakdown's title."""
    fields = {g.settings.get(CATEGORY_SETTING) for g in groups}
    return ", ".join(sorted(str(f) for f in fields if f)) or "category"


def example_rows(groups: Sequence[RunGroup], n: int = N_EXAMPLES) -> list[dict[str, Any]]:
    """The first `n` test examples (of the first run) with every run's output for the same example id."""
    per_group = {g.label: {p["id"]: p for p in g.predictions} for g in groups}
    first = list(next(iter(per_group.values())).values())[:n]
    return [
        {
            "id": p["id"],
            "input": p["input"],
            "reference": p["reference"],
            "outputs": {label: preds[p["id"]]["output"] for label, preds in per_group.items() if p["id"] in preds},
        }
        for p in first
    ]


def build_report(exp_dirs: Sequence[Path], baseline: str | None = None) -> Report | None:
    """Gather the run records of one or more experiment folders; None if there are none. Failed runs are
    listed on their own and left out of every comparison; where no run finished, they are all it shows."""
    runs: list[LoadedRun] = [run for d in exp_dirs for run in load_runs(Path(d))]
    if not runs:
        return None
    title = " vs ".join(Path(d).name for d in exp_dirs)
    records = [run.record for run in runs]
    failed = [record for record in records if record.status == "failed"]
    groups = group_runs(runs)
    if not groups:
        return Report(title, [], "–", "–", {"failed": failed_table(records)}, [], records=records, failed=failed)
    labels = [g.label for g in groups]
    baseline = baseline or default_baseline(groups)
    if baseline not in labels:
        raise ValueError(f"baseline '{baseline}' is not one of the runs: {labels}")
    primary = primary_metric(groups)
    tables = {"failed": failed_table(records), **comparison_tables(groups, baseline, primary)}
    figures = {
        "quality_cost": quality_cost_plot(groups, primary),
        "metrics": metrics_plot(groups, headline_metrics(groups)),
    }
    examples, stages = example_rows(groups), stage_tables(groups)
    breakdowns = breakdown_tables(groups, primary)
    return Report(title, groups, baseline, primary, tables, examples, figures, stages, records, failed, breakdowns)


def comparison_tables(groups: Sequence[RunGroup], baseline: str, primary: str) -> dict[str, pd.DataFrame]:
    """Every table of the finished runs, by the name the templates use."""
    versus = comparisons(groups, baseline)
    return {
        "methods": methods_table(groups, primary),
        "other_tests": other_tests_table(groups),
        "leaderboard": leaderboard(groups, versus),
        "versus": baseline_table(versus),
        "fields": leaderboard(groups, per_field=True),
        "cost": cost_table(groups),
        "retrieval": retrieval_table(groups),
        "categories": category_table(groups, primary),
        "leakage": leakage_table(groups),
        "config_diff": config_differences(groups),
    }


# --- Markdown ----------------------------------------------------------------------------------------


def cell(value: Any) -> str:
    """Markdown-safe table cell: HTML escaped, pipes escaped, line breaks as <br>."""
    text = html.escape(str(value), quote=False).replace("|", "\\|")
    return re.sub(r"\r\n|\r|\n", "<br>", text)


def text_cell(value: Any) -> str:
    """Model or data text in Markdown: a cell whose Markdown syntax (links, emphasis, code, headings)
    shows as typed instead of being rendered."""
    return cell(re.sub(r"([\\`*_\[\]#~!])", r"\\\1", str(value)))


def markdown_table(frame: pd.DataFrame, index_name: str = "") -> str:
    if frame.empty:
        return "_(none)_"
    header = [index_name, *map(str, frame.columns)]
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    for index, row in frame.iterrows():
        lines.append("| " + " | ".join(cell(v) for v in [index, *row.tolist()]) + " |")
    return "\n".join(lines)


# --- HTML --------------------------------------------------------------------------------------------


def html_table(frame: pd.DataFrame, index_name: str = "") -> Markup:
    """An escaped HTML table (pandas escapes every cell and header)."""
    if frame.empty:
        return Markup("<p class='none'>(none)</p>")
    frame = frame.rename_axis(index=None, columns=index_name or None)  # the name goes in the corner cell
    return Markup(frame.to_html(escape=True, border=0, classes="t", na_rep="–"))


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _environment(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ragft.report", "."),
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["cell"] = cell
    env.filters["text"] = text_cell
    return env


def render_markdown(report: Report) -> str:
    tables = {name: markdown_table(frame, _index_name(name)) for name, frame in report.tables.items()}
    figures = {name: f"{name}.png" for name in report.figures}
    stages = {label: markdown_table(frame, "stage") for label, frame in report.stages.items()}
    breakdowns = {name: markdown_table(frame, "run") for name, frame in report.breakdowns.items()}
    return (
        _environment(False)
        .get_template("report.md.j2")
        .render(**report.summary(), t=tables, figures=figures, stages=stages, breakdowns=breakdowns)
    )


def render_html(report: Report) -> str:
    """One file with inline CSS and embedded PNGs; every piece of model or data text is escaped."""
    tables = {name: html_table(frame, _index_name(name)) for name, frame in report.tables.items()}
    figures = {name: data_uri(png) for name, png in report.figures.items()}
    summary = report.summary()
    summary["notes"] = {name: notes.inline_html(text) for name, text in summary["notes"].items()}
    summary["metric_notes"] = [notes.inline_html(text) for text in summary["metric_notes"]]
    stages = {label: html_table(frame, "stage") for label, frame in report.stages.items()}
    breakdowns = {name: html_table(frame, "run") for name, frame in report.breakdowns.items()}
    return (
        _environment(True)
        .get_template("report.html.j2")
        .render(**summary, t=tables, figures=figures, stages=stages, breakdowns=breakdowns)
    )


def _index_name(table: str) -> str:
    return {"categories": "category", "config_diff": "config key", "leakage": "check"}.get(table, "run")


# --- writing -----------------------------------------------------------------------------------------


def _write(path: Path, data: str | bytes) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data) if isinstance(data, bytes) else tmp.write_text(data, encoding="utf-8")
    tmp.replace(path)
    return path


def write_report(
    exp_dir: Path, baseline: str | None = None, compare: Sequence[Path] = (), out_dir: Path | None = None
) -> list[Path]:
    """Refresh the experiment's runs.csv / runs.parquet and write report.md, report.html and the
    figures; with `compare`, the runs of those experiment folders join the same report, written to
    `out_dir` (default: `<exp_dir>_vs_<other>` beside `exp_dir`). Returns the written paths ([] if no runs)."""
    exp_dir = Path(exp_dir)
    exp_dirs = [exp_dir, *map(Path, compare)]
    if not compare:
        write_table(exp_dir)
    report = build_report(exp_dirs, baseline)
    if report is None:
        return []
    out_dir = Path(out_dir) if out_dir else exp_dir.with_name("_vs_".join(d.name for d in exp_dirs))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [_write(out_dir / f"{name}.png", png) for name, png in report.figures.items()]
    written.insert(0, _write(out_dir / "report.html", render_html(report)))
    written.insert(0, _write(out_dir / "report.md", render_markdown(report)))
    if not compare:
        written += [exp_dir / "runs.csv", exp_dir / "runs.parquet"]
    return written
