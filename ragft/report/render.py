"""Write an experiment's report.md and a self-contained report.html from its run records (never from
the configs that made them).

python -m ragft.report results/<experiment> [results/<other experiment> ...]
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from filelock import FileLock
from markupsafe import Markup

from ragft.record.run import RunRecord, replace_files, run_dirs
from ragft.record.table import write_table
from ragft.report import notes
from ragft.report.adaptation import base_group, methods_table, other_tests_table, stage_tables
from ragft.report.costs import cost_table
from ragft.report.curves import crossings, curves_table, learning_curves
from ragft.report.decision import Constraints, Decision, decide, decision_table
from ragft.report.escape import md_code, md_text
from ragft.report.groups import (
    LoadedRun,
    RunGroup,
    Unreadable,
    default_baseline,
    group_runs,
    headline_metrics,
    load_experiment,
    primary_metric,
)
from ragft.report.plots import curves_plot, metrics_plot, quality_cost_plot
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
    unreadable: list[Unreadable] = field(default_factory=list)  # run folders left out
    decision: Decision | None = None  # the arm the records recommend, without constraints

    @property
    def base_label(self) -> str:
        base = base_group(self.groups)
        return base.label if base else "the base model"

    @property
    def metric_names(self) -> set[str]:
        return {n for g in self.groups for n in g.scores}

    def summary(self, note: Callable[[str, dict[str, str]], Any]) -> dict[str, Any]:
        """What the templates print besides the tables; `note` renders a section's note (notes.SECTIONS)
        with the names it quotes (baseline, primary metric, base model), escaped for the rendering."""
        names = {"baseline": self.baseline, "primary": self.primary, "base": self.base_label}
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
            "notes": {key: note(text, names) for key, text in notes.SECTIONS.items()},
            "metric_notes": [text for name, text in notes.METRICS.items() if name in self.metric_names],
            "decision": self.decision.lines()[1:] if self.decision else [],  # (the constraints line: none)
            "tuned": {g.label: g.settings.get("tune.trials") for g in self.groups if _tuned(g)},
            "crossings": crossings(learning_curves(self.groups, self.primary)) if self.groups else [],
        }


def _tuned(group: RunGroup) -> bool:
    """Whether the group's settings were chosen on the validation split (ragft/tune.py records them)."""
    return any(key.startswith("tune.chosen.") for key in group.settings)


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
            "input": p.get("input", ""),
            "reference": p.get("reference", ""),
            "outputs": {
                label: preds[p["id"]].get("output", "") for label, preds in per_group.items() if p["id"] in preds
            },
        }
        for p in first
    ]


def build_report(exp_dirs: Sequence[Path], baseline: str | None = None) -> Report | None:
    """Gather the run records of one or more experiment folders; None if there are none. Failed runs are
    listed on their own and left out of every comparison; where no run finished, they are all it shows.
    Run folders that cannot be read are listed too, and left out of everything else."""
    runs: list[LoadedRun] = []
    unreadable: list[Unreadable] = []
    for exp_dir in map(Path, exp_dirs):
        loaded, skipped = load_experiment(exp_dir)
        runs += loaded
        unreadable += skipped
    if not runs and not unreadable:
        return None
    title = " vs ".join(Path(d).name for d in exp_dirs)
    records = [run.record for run in runs]
    failed = [record for record in records if record.status == "failed"]
    lists = {"failed": failed_table(records), "unreadable": unreadable_table(unreadable, several=len(exp_dirs) > 1)}
    groups = group_runs(runs)
    if not groups:
        return Report(title, [], "–", "–", lists, [], records=records, failed=failed, unreadable=unreadable)
    labels = [g.label for g in groups]
    baseline = baseline or default_baseline(groups)
    if baseline not in labels:
        raise ValueError(f"baseline '{baseline}' is not one of the runs: {labels}")
    primary = primary_metric(groups)
    tables = {**lists, **comparison_tables(groups, baseline, primary)}
    figures = {
        "quality_cost": quality_cost_plot(groups, primary),
        "metrics": metrics_plot(groups, headline_metrics(groups)),
    }
    curves = learning_curves(groups, primary)
    if curves:
        figures["curves"] = curves_plot(curves, primary)
    tables["curves"] = curves_table(curves)
    examples, stages = example_rows(groups), stage_tables(groups)
    breakdowns = breakdown_tables(groups, primary)
    decision = decide(groups, primary, Constraints())
    tables["decision"] = decision_table(decision)
    return Report(
        title, groups, baseline, primary, tables, examples, figures, stages, records, failed, breakdowns, unreadable,
        decision,
    )  # fmt: skip


def unreadable_table(unreadable: Sequence[Unreadable], several: bool) -> pd.DataFrame:
    """The run folders left out, one line each: the folder (with its experiment where several are
    compared) and which file could not be read, and why."""
    rows = {
        f"{u.folder.parent.name}/{u.folder.name}" if several else u.folder.name: {"reason": u.reason}
        for u in unreadable
    }
    return pd.DataFrame.from_dict(rows, orient="index")


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


cell = text_cell = md_text  # the names earlier versions gave the one Markdown escaping


def markdown_table(frame: pd.DataFrame, index_name: str = "") -> str:
    """A Markdown table: every header, index label and value escaped by `md_text`."""
    if frame.empty:
        return "_(none)_"
    header = [index_name, *frame.columns]
    lines = ["| " + " | ".join(md_text(h) for h in header) + " |", "|" + "---|" * len(header)]
    for index, row in frame.iterrows():
        lines.append("| " + " | ".join(md_text(v) for v in [index, *row.tolist()]) + " |")
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
    env.filters["md"] = md_text  # any text from the records, outside a table (tables escape every cell)
    env.filters["code"] = md_code  # a name shown as code
    return env


def render_markdown(report: Report) -> str:
    """report.md: every text from the records escaped (`md_text`, or a code span for names), so that
    nothing a run recorded renders as a link, image, HTML, emphasis or heading, or breaks a table."""
    tables = {name: markdown_table(frame, _index_name(name)) for name, frame in report.tables.items()}
    figures = {name: f"{name}.png" for name in report.figures}
    stages = {label: markdown_table(frame, "stage") for label, frame in report.stages.items()}
    breakdowns = {name: markdown_table(frame, "run") for name, frame in report.breakdowns.items()}
    return (
        _environment(False)
        .get_template("report.md.j2")
        .render(
            **report.summary(notes.section_markdown), t=tables, figures=figures, stages=stages, breakdowns=breakdowns
        )
    )


def render_html(report: Report) -> str:
    """One file with inline CSS and embedded PNGs; every piece of model or data text is escaped."""
    tables = {name: html_table(frame, _index_name(name)) for name, frame in report.tables.items()}
    figures = {name: data_uri(png) for name, png in report.figures.items()}
    summary = report.summary(notes.section_html)
    summary["metric_notes"] = [notes.inline_html(text) for text in summary["metric_notes"]]
    stages = {label: html_table(frame, "stage") for label, frame in report.stages.items()}
    breakdowns = {name: html_table(frame, "run") for name, frame in report.breakdowns.items()}
    return (
        _environment(True)
        .get_template("report.html.j2")
        .render(**summary, t=tables, figures=figures, stages=stages, breakdowns=breakdowns)
    )


def _index_name(table: str) -> str:
    names = {"categories": "category", "config_diff": "config key", "leakage": "check", "unreadable": "folder"}
    return names.get(table, "run")


# --- writing -----------------------------------------------------------------------------------------


def write_files(files: dict[Path, str | bytes]) -> list[Path]:
    """Every file written in one step (`replace_files`): an error leaves every earlier file as it was."""
    return replace_files({path: partial(_write, data=data) for path, data in files.items()})


def _write(path: Path, data: str | bytes) -> None:
    path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data, encoding="utf-8")


def write_report(
    exp_dir: Path, baseline: str | None = None, compare: Sequence[Path] = (), out_dir: Path | None = None
) -> list[Path]:
    """Refresh the experiment's runs.csv / runs.parquet and write report.md, report.html and the
    figures; with `compare`, the runs of those experiment folders join the same report, written to
    `out_dir` (default: `<exp_dir>_vs_<other>` beside `exp_dir`). Returns the written paths ([] if no runs).
    Everything is rendered before the first file is replaced: an error leaves the previous report whole."""
    exp_dir = Path(exp_dir)
    exp_dirs = [exp_dir, *map(Path, compare)]
    out_dir = Path(out_dir) if out_dir else exp_dir.with_name("_vs_".join(d.name for d in exp_dirs))
    if not out_dir.is_dir() and not any(True for _ in run_dirs(exp_dir)):
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    # Jobs finishing at once (a parallel launcher) each refresh the report: one at a time, so that the
    # report last written is built from every record written before it.
    with FileLock(str(out_dir / ".report.lock")):
        if not compare:
            write_table(exp_dir)
        report = build_report(exp_dirs, baseline)
        if report is None:
            return []
        files: dict[Path, str | bytes] = {
            out_dir / "report.md": render_markdown(report),
            out_dir / "report.html": render_html(report),
            **{out_dir / f"{name}.png": png for name, png in report.figures.items()},
        }
        written = write_files(files)
    if not compare:
        written += [path for path in (exp_dir / "runs.csv", exp_dir / "runs.parquet") if path.is_file()]
    return written
