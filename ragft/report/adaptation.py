"""Adaptation tables: methods side by side, other test sets (forgetting) and sequential stages."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ragft.eval.stats import paired_difference
from ragft.record.cost import PreferenceCost
from ragft.report.costs import figure, stored, total_params, train_memory
from ragft.report.groups import RunGroup
from ragft.report.tables import SIGNIFICANCE, add_holm, with_ci


def base_group(groups: Sequence[RunGroup]) -> RunGroup | None:
    """The reference for forgetting: a run of the untrained generator as configured (`adaptation=none`,
    zero-shot, where there is one; not `base_4bit`, which is QLoRA's own reference)."""
    untrained = [g for g in groups if not g.trains]
    ranked = sorted(untrained, key=lambda g: (g.identity.adaptation != "none", g.identity.context != "zero_shot"))
    return ranked[0] if ranked else None


def other_test_names(groups: Sequence[RunGroup]) -> list[str]:
    return list(dict.fromkeys(n for g in groups for n in g.other_tests))


Changes = dict[tuple[str, str], dict[str, float]]  # (run label, other test set) -> paired difference


def _change(group: RunGroup, base: RunGroup | None, name: str) -> dict[str, float] | None:
    """Paired difference from the base model on another test set's examples (None: nothing to compare)."""
    if base is None or group is base or name not in base.other_tests or name not in group.other_tests:
        return None
    candidate, reference = group.other_tests[name].per_example, base.other_tests[name].per_example
    if not set(candidate) & set(reference):
        return None
    return paired_difference(candidate, reference)


def forgetting_changes(groups: Sequence[RunGroup]) -> Changes:
    """Every run's change against the base model on every other test set, each with `p_holm`: its p-value
    Holm-adjusted over all of these comparisons (one family: the report's forgetting columns)."""
    base = base_group(groups)
    changes: Changes = {}
    for g in groups:
        for name in other_test_names(groups):
            if (difference := _change(g, base, name)) is not None:
                changes[(g.label, name)] = difference
    add_holm(list(changes.values()))
    return changes


def _change_text(difference: dict[str, float] | None) -> str:
    if difference is None:
        return "–"
    star = "*" if difference["p_holm"] < SIGNIFICANCE else ""
    return f"{difference['diff']:+.3f}{star} [{difference['ci_low']:+.3f}, {difference['ci_high']:+.3f}]"


def other_tests_table(groups: Sequence[RunGroup]) -> pd.DataFrame:
    """Each run's score on the other test sets and its change against the base model (forgetting)."""
    changes = forgetting_changes(groups)
    names = other_test_names(groups)
    metric = {n: next(g.other_tests[n].metric for g in groups if n in g.other_tests) for n in names}
    rows = {}
    for g in groups:
        row = {}
        for name in names:
            scored = g.other_tests.get(name)
            row[f"{name} {metric[name]}"] = with_ci(scored.summary if scored else None)
            row[f"{name}: change vs base"] = _change_text(changes.get((g.label, name))) if scored else "–"
        rows[g.label] = row
    return pd.DataFrame.from_dict(rows, orient="index") if names else pd.DataFrame()


def methods_table(groups: Sequence[RunGroup], primary: str) -> pd.DataFrame:
    """The adaptation methods side by side: quality, trainable share, storage per task, training time and
    memory, and the change on each other test set against the base model. Shown where runs compare
    several adaptation methods."""
    if len({g.identity.adaptation for g in groups if g.trains}) < 2:
        return pd.DataFrame()
    changes = forgetting_changes(groups)
    rows = {}
    for g in groups:
        cost, training = g.cost, g.cost.training
        trained = cost.trainable_params
        row = {
            "method": g.identity.adaptation,
            primary: with_ci(g.scores.get(primary)),
            "trainable": f"{100 * trained / total_params(cost):.3g}%" if trained else "0",
            "stored per task": stored(cost),
            "train time (s)": figure(training.train_s, ".0f") if training and trained else "–",
            "train tokens/s": figure(training.train_tokens_per_s, ".0f") if training and trained else "–",
            "train peak RSS (at start) MB": train_memory(training) if training and trained else "–",
            "preference pairs": _pairs(training.preference if training else None),
        }
        for name in other_test_names(groups):
            row[f"{name} change"] = _change_text(changes.get((g.label, name)))
        rows[g.label] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def _pairs(preference: PreferenceCost | None) -> str:
    """What a preference stage trained on: how many pairs, from where (and below which score)."""
    if preference is None:
        return "–"
    below = f", below {preference.threshold:g}" if preference.threshold is not None else ""
    return f"{preference.pairs} ({preference.source}{below})"


def stage_tables(groups: Sequence[RunGroup]) -> dict[str, pd.DataFrame]:
    """Per sequentially trained run: before training (where recorded) and after each stage (rows), the
    score on each stage's test set (columns, in training order), each with the metric its task scores first."""
    tables = {}
    for g in groups:
        trained = [s for s in g.stages if s.stage is not None]
        if not trained:
            continue
        final = trained[-1].scores
        titles = {s.stage: f"{s.stage} ({final[s.stage].metric})" if s.stage in final else s.stage for s in trained}
        labels = iter(f"after {i}: {s.stage}" for i, s in enumerate(trained, start=1))
        rows = {
            "before training" if stage.stage is None else next(labels): {
                title: f"{stage.scores[name].summary.mean:.3f}" if name in stage.scores else "–"
                for name, title in titles.items()
            }
            for stage in g.stages
        }
        tables[g.label] = pd.DataFrame.from_dict(rows, orient="index").fillna("–")
    return tables
