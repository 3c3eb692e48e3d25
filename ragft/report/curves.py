"""Data-efficiency curves: an arm's quality against the amount it learns from — training examples for a
trained arm (`task.limits.train`), demonstrations for few-shot (`context.builder.k`), passages for RAG
(`context.builder.top_k`) — read from groups of the same arm that differ in that one setting
(`+exp=data_efficiency`), and where two arms' curves cross."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ragft.record.run import Summary
from ragft.report.groups import RunGroup

CURVE_SETTINGS = {  # setting -> what its value counts
    "task.limits.train": "training examples",
    "context.builder.k": "demonstrations",
    "context.builder.top_k": "passages",
}
CHOSEN = "tune.chosen."  # settings tuning chose (ragft/tune.py)


@dataclass(frozen=True)
class Curve:
    arm: str
    setting: str
    points: list[tuple[float, Summary]]  # (the setting's value, the primary metric there), by value

    @property
    def counts(self) -> str:
        return CURVE_SETTINGS[self.setting]


def learning_curves(groups: Sequence[RunGroup], metric: str) -> list[Curve]:
    """For each arm and curve setting, one curve per family of the arm's groups that differ in that
    setting only (and the seed), at two values or more: few-shot run at five training sizes and, at one
    of them, at four `k` draws a curve over each. A family is labelled by the arm, and by the settings
    that tell it from the arm's other families over the same setting where there are several."""
    by_arm: dict[str, list[RunGroup]] = {}
    for group in groups:
        if metric in group.scores:
            by_arm.setdefault(group.identity.arm, []).append(group)
    curves = []
    for arm, members in by_arm.items():
        for setting in CURVE_SETTINGS:
            families = [f for f in _families(members, setting) if len(f) > 1]
            for family in families:
                values = [(g.settings.get(setting), g.scores[metric]) for g in family]
                points = [(float(v), s) for v, s in values if isinstance(v, (int, float))]
                if len(points) == len(values):
                    label = _family_label(arm, family, families, setting)
                    curves.append(Curve(label, setting, sorted(points, key=lambda p: p[0])))
    return curves


def _families(groups: Sequence[RunGroup], setting: str) -> list[list[RunGroup]]:
    """`groups` split into sets equal in every setting but `setting` and what tuning chose at each value
    (an arm tuned at each training size is one curve)."""
    families: dict[str, list[RunGroup]] = {}
    for group in groups:
        tuned = _tuned_keys(group.settings)
        others = sorted((k, repr(v)) for k, v in group.settings.items() if k != setting and k not in tuned)
        families.setdefault(repr(others), []).append(group)
    return list(families.values())


def _tuned_keys(settings: dict[str, object]) -> set[str]:
    """`tune.chosen.*` and the settings they name (a named config node's own keys included)."""
    chosen = [k.removeprefix(CHOSEN) for k in settings if k.startswith(CHOSEN)]
    return {k for k in settings if k.startswith(CHOSEN) or any(k == c or k.startswith(f"{c}.") for c in chosen)}


def _family_label(arm: str, family: Sequence[RunGroup], families: Sequence[Sequence[RunGroup]], setting: str) -> str:
    if len(families) == 1:
        return arm
    apart = [k for k in _varying([f[0] for f in families]) if k != setting]
    return f"{arm} ({', '.join(f'{k}={family[0].settings.get(k)}' for k in apart)})"


CURVE_COLUMNS = {"task.limits.train": "train", "context.builder.k": "k", "context.builder.top_k": "top_k"}


def curves_table(curves: Sequence[Curve]) -> pd.DataFrame:
    """Each curve's points: the metric's mean and interval at each value, a column per value (named by its
    setting too where the curves vary in several: `train=15`, `k=1`) and "–" where a curve has no point."""
    several = len({c.setting for c in curves}) > 1

    def column(curve: Curve, value: float) -> str:
        return f"{CURVE_COLUMNS[curve.setting]}={value:g}" if several else f"{value:g}"

    rows = {
        f"{c.arm} ({c.counts})": {column(c, x): f"{s.mean:.3f} [{s.ci_low:.3f}, {s.ci_high:.3f}]" for x, s in c.points}
        for c in sorted(curves, key=lambda c: list(CURVE_SETTINGS).index(c.setting))
    }
    return pd.DataFrame.from_dict(rows, orient="index").fillna("–")


def crossings(curves: Sequence[Curve]) -> list[str]:
    """Where one arm's curve passes another's over the same setting: between the last value where it was
    worse and the first where it is better (means, a tie in between passed over; the intervals say how
    sure), better meaning higher or lower as the metric says."""
    said = []
    for i, first in enumerate(curves):
        for second in curves[i + 1 :]:
            if first.setting != second.setting:
                continue
            shared = sorted({x for x, _ in first.points} & {x for x, _ in second.points})
            a, b = dict(first.points), dict(second.points)
            sign = 1 if all(s.higher_is_better for _, s in first.points) else -1
            ahead = [(x, sign * (a[x].mean - b[x].mean)) for x in shared if a[x].mean != b[x].mean]
            for (x0, d0), (x1, d1) in zip(ahead, ahead[1:]):
                if d0 * d1 < 0:
                    leader, other = (first.arm, second.arm) if d1 > 0 else (second.arm, first.arm)
                    said.append(f"{leader} passes {other} between {x0:g} and {x1:g} {first.counts}")
    return said


def _varying(groups: Sequence[RunGroup]) -> list[str]:
    """The settings whose values differ between `groups` (seeds are not settings of a group)."""
    keys = set().union(*(g.settings for g in groups))
    return sorted(k for k in keys if len({repr(g.settings.get(k)) for g in groups}) > 1)
