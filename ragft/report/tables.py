"""Comparison tables built from run groups: leaderboard, baseline tests, fields, categories, retrieval,
leakage and settings differences, and the table of runs that failed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ragft.data.leakage import describe_pairs
from ragft.errors import one_line
from ragft.eval.registry import mean_with_ci
from ragft.eval.stats import holm_adjusted, paired_difference
from ragft.record.run import RunRecord, Summary
from ragft.report.costs import size
from ragft.report.groups import RunGroup, arm_rank, headline_metrics, retrieval_metrics, several_experiments

SIGNIFICANCE = 0.05
RETRIEVAL_COSTS = {
    "corpus_passages": "passages",
    "retriever_train_s": "train retriever (s)",
    "embed_corpus_s": "embed corpus (s)",
    "index_build_s": "build index (s)",
    "index_bytes": "index size",
}
ERROR_CHARS = 200  # a failure's message is cut to one short line; the run's log has the whole trace

Differences = dict[str, dict[str, dict[str, float]]]  # label -> metric -> paired difference


# --- quality ---------------------------------------------------------------------------------------


def with_ci(summary: Summary | None) -> str:
    if summary is None:
        return "–"
    text = f"{summary.mean:.3f} [{summary.ci_low:.3f}, {summary.ci_high:.3f}]"
    return text + (f" sd {summary.seed_sd:.3f}" if summary.seed_sd is not None else "")


def comparisons(groups: Sequence[RunGroup], baseline: str) -> Differences:
    """label -> metric -> paired difference from the baseline on the examples both scored (runs of
    another task than the baseline's are not compared: their example ids name other examples)."""
    base = next(g for g in groups if g.label == baseline)
    results: Differences = {}
    for group in groups:
        if group is base or group.identity.task != base.identity.task:
            continue
        for metric in headline_metrics([group]):
            candidate = {i: s[metric] for i, s in group.per_example.items() if metric in s}
            reference = {i: s[metric] for i, s in base.per_example.items() if metric in s}
            if set(candidate) & set(reference):
                results.setdefault(group.label, {})[metric] = paired_difference(candidate, reference)
    return with_holm(results)


def with_holm(results: Differences) -> Differences:
    """Each difference with `p_holm`: its p-value Holm-adjusted over every comparison of the report (all
    runs x all headline metrics), the family a reader scans for ▲/▼."""
    add_holm([d for by_metric in results.values() for d in by_metric.values()])
    return results


def add_holm(family: Sequence[dict[str, float]]) -> None:
    """Set `p_holm` in each paired difference of `family`: its `p_value` Holm-adjusted over the family."""
    for difference, adjusted in zip(family, holm_adjusted([d["p_value"] for d in family])):
        difference["p_holm"] = adjusted


def _marker(difference: dict[str, float] | None, higher_is_better: bool) -> str:
    """▲ significantly better than the baseline, ▼ significantly worse (Holm-adjusted p), nothing otherwise."""
    if difference is None or difference["p_holm"] >= SIGNIFICANCE or difference["diff"] == 0:
        return ""
    return " ▲" if (difference["diff"] > 0) == higher_is_better else " ▼"


def leaderboard(groups: Sequence[RunGroup], versus: Differences | None = None, per_field: bool = False) -> pd.DataFrame:
    """Score means with 95% CIs (and the seeds' sd where there are several), marked ▲/▼ where a paired
    test against the baseline is significant; `per_field` picks the `field/<name>` scores instead."""
    versus = versus or {}
    names = (
        list(dict.fromkeys(n for g in groups for n in g.scores if "/" in n)) if per_field else headline_metrics(groups)
    )
    several_seeds = any(len(g.runs) > 1 for g in groups)
    rows = {}
    for g in groups:
        rows[g.label] = {
            n.split("/")[-1]: with_ci(g.scores.get(n))
            + _marker(versus.get(g.label, {}).get(n), g.scores[n].higher_is_better if n in g.scores else True)
            for n in names
        }
        if several_seeds:
            rows[g.label]["seeds"] = ", ".join(map(str, g.seeds))
    return pd.DataFrame.from_dict(rows, orient="index")


def baseline_table(versus: Differences) -> pd.DataFrame:
    """Each run against the baseline: difference, paired-bootstrap CI, permutation p and its Holm-adjusted
    value; `*` where the adjusted p < 0.05."""
    rows = {
        label: {
            metric: f"{d['diff']:+.3f}{'*' if d['p_holm'] < SIGNIFICANCE else ''} "
            f"[{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] p={d['p_value']:.3g} (Holm {d['p_holm']:.3g})"
            for metric, d in by_metric.items()
        }
        for label, by_metric in versus.items()
    }
    return pd.DataFrame.from_dict(rows, orient="index").fillna("–")


def category_table(groups: Sequence[RunGroup], metric: str) -> pd.DataFrame:
    """Mean of `metric` per category of the test examples (columns: runs)."""
    columns = {}
    for g in groups:
        category = {p["id"]: p["category"] for p in g.predictions}
        frame = pd.DataFrame(
            [{"category": category.get(i, ""), "score": s.get(metric)} for i, s in g.per_example.items()]
        ).dropna()
        if not frame.empty:
            columns[g.label] = frame.groupby("category")["score"].mean()
    table = pd.DataFrame(columns)
    return table.map(lambda v: f"{v:.2f}" if pd.notna(v) else "–") if not table.empty else table


def breakdown_tables(groups: Sequence[RunGroup], metric: str) -> dict[str, pd.DataFrame]:
    """`metric` by each further grouping of the test examples (the task's `data.breakdowns`, e.g.
    knowledge: seen / unseen): mean and bootstrap 95% interval per value (rows: runs, columns: values)."""
    names = dict.fromkeys(n for g in groups for p in g.predictions for n in p.get("breakdowns") or {})
    return {name: _breakdown(groups, metric, name) for name in names}


def _breakdown(groups: Sequence[RunGroup], metric: str, name: str) -> pd.DataFrame:
    rows: dict[str, dict[str, str]] = {}
    for g in groups:
        value_of = {p["id"]: (p.get("breakdowns") or {}).get(name) for p in g.predictions}
        scores: dict[str, list[float]] = {}
        for example_id, example_scores in g.per_example.items():
            if metric in example_scores and value_of.get(example_id) is not None:
                scores.setdefault(str(value_of[example_id]), []).append(example_scores[metric])
        rows[g.label] = {f"{value} (n={len(values)})": _mean_ci(values) for value, values in sorted(scores.items())}
    return pd.DataFrame.from_dict(rows, orient="index").fillna("–")


def _mean_ci(values: Sequence[float]) -> str:
    interval = mean_with_ci(values)
    return f"{interval['mean']:.3f} [{interval['ci_low']:.3f}, {interval['ci_high']:.3f}]"


# --- retrieval and leakage ---------------------------------------------------------------------------


def retrieval_table(groups: Sequence[RunGroup]) -> pd.DataFrame:
    """Retrieval quality (the retrieval group's metrics) and index cost of the runs that retrieve."""
    names = retrieval_metrics(groups)
    rows = {}
    for g in groups:
        retrieval = g.cost.retrieval
        if not any(m in g.scores for m in names) and retrieval is None:
            continue
        row = {m: with_ci(g.scores.get(m)) for m in names}
        row["retriever"] = g.identity.retriever or "–"
        row["embedder"] = g.identity.embedder or "–"
        for key, title in RETRIEVAL_COSTS.items():
            value = getattr(retrieval, key) if retrieval else None
            row[title] = "–" if value is None else size(value) if key == "index_bytes" else f"{value:.3g}"
        rows[g.label] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def leakage_table(groups: Sequence[RunGroup]) -> pd.DataFrame:
    """One row per task and check: how many test examples duplicate train inputs or corpus text. Runs
    whose records of the same check differ (other data or settings) get a row each, labelled by run."""
    rows: dict[str, dict[str, Any]] = {}
    seen: set[tuple[str, str]] = set()
    for g in groups:
        for check, summary in g.leakage.items():
            name = f"{g.identity.task}: {check.replace('_', '/')}"
            fingerprint = json.dumps(summary, sort_keys=True)
            if (name, fingerprint) in seen:
                continue
            seen.add((name, fingerprint))
            rows[name if name not in rows else f"{name} ({g.label})"] = {
                "checked": summary["checked"],
                "exact": summary["exact"],
                "near": summary["near"],
                "leak rate": f"{summary['rate']:.1%}",
                "closest pair": f"{summary['max_similarity']:.2f}",
                "not checked (short)": summary.get("too_short", "–"),
                "examples": describe_pairs(summary["examples"]) or "–",
            }
    return pd.DataFrame.from_dict(rows, orient="index")


# --- settings and failures ---------------------------------------------------------------------------


def config_differences(groups: Sequence[RunGroup]) -> pd.DataFrame:
    """The recorded settings whose values differ between groups (seeds excluded; a data file is named by
    its file name, not where it was read from)."""
    flat = {g.label: pd.Series(_shown_settings(g.settings), dtype=object).map(_cell) for g in groups}
    table = pd.DataFrame(flat).fillna("–")  # "–": the run records no such setting
    if table.empty:
        return table
    return table[table.nunique(axis=1) > 1]


def _shown_settings(settings: dict[str, Any]) -> dict[str, Any]:
    return {
        key: Path(value).name if key.rsplit(".", 1)[-1] == "path" and isinstance(value, str) else value
        for key, value in settings.items()
    }


def _cell(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) or value is None else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def failed_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """The runs that failed, one line each: where (stage) and why (the error), and their folder (its
    `run.log` holds the trace). They are in no other table or figure."""
    prefix = several_experiments(records)
    ordered = sorted(records, key=lambda r: (*arm_rank(r.identity), r.identity.seed))
    rows = [
        {
            "run": f"{r.identity.exp}/{r.identity.arm}" if prefix else r.identity.arm,
            "stage": r.failure.stage,
            "error": _shortened(f"{r.failure.error}: {r.failure.message}"),
            "folder": r.identity.run_id,
        }
        for r in ordered
        if r.failure
    ]
    return pd.DataFrame(rows).set_index("run").rename_axis(None) if rows else pd.DataFrame()


def _shortened(text: str) -> str:
    line = one_line(text)
    return line if len(line) <= ERROR_CHARS else line[: ERROR_CHARS - 3] + "..."
