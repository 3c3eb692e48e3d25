"""The decision guide: which arm a team should deploy under its constraints, read from run records only.

Each finished configuration (a `RunGroup`, its seeds pooled) is described by what its records measured:
quality on the primary metric, batch-1 latency (p95), serving memory (the generation stretch's peak),
storage per task (adapter or model, plus index), training time, and the time to absorb one knowledge
update from a cold cache (`Cost.knowledge_update_s`: re-train the generator where it is trained,
re-embed and re-index the corpus where it retrieves, re-train a fine-tuned retriever; the times
stored with the cached artefacts, never a cache read). The best arm is the highest-scoring one that meets every
constraint; arms indistinguishable from it (paired permutation test on the shared test examples,
Holm-adjusted over the comparisons made) are named as ties, or, where there is none, the closest with its
p-value; the constraints the best meets are said with its figures, and every better-scoring arm is listed
with the constraints that rule it out. Floors and ceilings (a fixed answer, gold passages in the prompt) are
reference points, never recommended.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import pandas as pd

from ragft.errors import ConfigError
from ragft.eval.stats import holm_adjusted, paired_difference
from ragft.record.cost import Cost
from ragft.record.run import Summary
from ragft.report.groups import RunGroup

ALPHA = 0.05  # ties: arms whose difference from the best is not significant at this level, adjusted
MB = 1024 * 1024
# Arms that are reference points, not deployable strategies: settings that say so.
REFERENCE_SETTINGS = {
    "adaptation.answer._target_": "a fixed answer (floor)",
    "context.builder._target_=ragft.context.rag.OracleContext": "gold passages in the prompt (ceiling)",
}


@dataclass(frozen=True)
class Constraints:
    """What a team can afford; None: no limit."""

    max_latency_s: float | None = None  # one request alone (batch 1), 95th percentile
    max_memory_gb: float | None = None  # serving: the generation stretch's peak (CUDA's where recorded)
    max_storage_mb: float | None = None  # per task: adapter or model copy, plus the retrieval index
    max_train_minutes: float | None = None  # to train the arm once (generator and retriever)
    updates_per_month: float = 0.0  # knowledge changes to absorb
    max_update_minutes: float | None = None  # per month: updates_per_month x one update's measured time
    min_quality: float | None = None  # on the primary metric (its mean)

    @classmethod
    def parse(cls, assignments: Sequence[str]) -> Constraints:
        """`key=value` pairs from a command line; a ConfigError naming the key for anything else."""
        known = {f.name for f in fields(cls)}
        values: dict[str, float] = {}
        for assignment in assignments:
            key, sep, text = assignment.partition("=")
            if not sep or key not in known:
                raise ConfigError(
                    key or assignment, "is not a constraint.", f"Constraints are: {', '.join(sorted(known))}."
                )
            try:
                value = float(text)
            except ValueError:
                raise ConfigError(key, f"{text!r} is not a number.") from None
            if not math.isfinite(value) or value < 0:
                raise ConfigError(key, f"{text!r} is not allowed.", "Set it to a number >= 0.")
            values[key] = value
        if "max_update_minutes" in values and not values.get("updates_per_month"):
            raise ConfigError(
                "max_update_minutes", "limits the time updates take, but no update is expected.",
                "Set updates_per_month=... too (knowledge changes a month).",
            )  # fmt: skip
        return cls(**values)

    def stated(self) -> dict[str, float]:
        """The constraints that were set (a limit of 0 included; no updates a month is no constraint)."""
        stated = {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}
        if not self.updates_per_month:
            del stated["updates_per_month"]
        return stated


@dataclass(frozen=True)
class ArmFacts:
    """What the records measured of one arm, in the units the constraints use (None: not measured)."""

    label: str
    quality: Summary
    latency_s: float | None
    memory_gb: float | None
    storage_mb: float
    train_minutes: float
    update_minutes: float | None  # one knowledge update absorbed, from a cold cache
    reference: str | None = None  # why the arm is a reference point, not a strategy

    @classmethod
    def of(cls, group: RunGroup, primary: str) -> ArmFacts:
        cost = group.cost
        return cls(
            label=group.label,
            quality=group.scores[primary],
            latency_s=cost.generation.latency_batch1_p95_s,
            memory_gb=_serving_gb(cost),
            storage_mb=_storage_bytes(cost) / MB,
            train_minutes=_train_s(cost) / 60,
            update_minutes=None if cost.knowledge_update_s is None else cost.knowledge_update_s / 60,
            reference=_reference(group.settings),
        )

    def violations(self, limits: Constraints) -> list[str]:
        """Each constraint this arm breaks, with the measured figure; an unmeasured figure breaks a limit
        set on it (a recommendation never rests on a number nobody measured)."""
        return [said for said, met in self._checked(limits) if not met]

    def meets(self, limits: Constraints) -> list[str]:
        """Each constraint this arm meets, with the measured figure."""
        return [said for said, met in self._checked(limits) if met]

    def _checked(self, limits: Constraints) -> list[tuple[str, bool]]:
        """Every stated constraint, said with this arm's figure, and whether the arm meets it."""
        checks = [
            (limits.max_latency_s, self.latency_s, "batch-1 p95 latency", "s", "max_latency_s"),
            (limits.max_memory_gb, self.memory_gb, "serving peak memory", "GB", "max_memory_gb"),
            (limits.max_storage_mb, self.storage_mb, "storage per task", "MB", "max_storage_mb"),
            (limits.max_train_minutes, self.train_minutes, "training", "min", "max_train_minutes"),
            (limits.max_update_minutes, self.monthly_update_minutes(limits), "updates", "min/month", "max_update_minutes"),
        ]  # fmt: skip
        checked = []
        for limit, value, what, unit, key in checks:
            if limit is None:
                continue
            if value is None:
                checked.append((f"{what} not measured ({key}={limit:g})", False))
            else:
                checked.append(
                    (f"{what} {value:.3g} {unit} {'<=' if value <= limit else '>'} {key}={limit:g}", value <= limit)
                )
        if limits.min_quality is not None:
            met = self.quality.mean >= limits.min_quality
            checked.append(
                (f"quality {self.quality.mean:.3f} {'>=' if met else '<'} min_quality={limits.min_quality:g}", met)
            )
        return checked

    def monthly_update_minutes(self, limits: Constraints) -> float | None:
        if not limits.updates_per_month:
            return 0.0
        return None if self.update_minutes is None else limits.updates_per_month * self.update_minutes


@dataclass
class Decision:
    """The recommendation, and the reasons for it."""

    primary: str
    constraints: Constraints
    facts: list[ArmFacts]
    best: str | None
    ties: dict[str, float] = field(default_factory=dict)  # label -> Holm-adjusted p against the best
    runner_up: tuple[str, float] | None = None  # the next feasible arm and its adjusted p, when no tie
    ruled_out: dict[str, list[str]] = field(default_factory=dict)  # better-scoring arms -> what rules them out
    unmet: dict[str, list[str]] = field(default_factory=dict)  # every strategy's broken constraints

    def lines(self) -> list[str]:
        """The decision in plain sentences, best first."""
        stated = ", ".join(f"{k}={v:g}" for k, v in self.constraints.stated().items()) or "none"
        said = [f"Constraints: {stated}. Quality: {self.primary} (higher is better)." if self._higher else
                f"Constraints: {stated}. Quality: {self.primary} (lower is better)."]  # fmt: skip
        if self.best is None:
            said.append("No arm meets the constraints.")
            said += [f"{label}: {'; '.join(reasons)}." for label, reasons in self.unmet.items()]
            return said
        best = self._facts(self.best)
        said.append(f"Recommended: {self.best} ({self.primary} {_quality(best.quality)}).")
        met = best.meets(self.constraints)
        said.append(
            f"It meets every constraint: {'; '.join(met)}."
            if met
            else "No constraint was set: it is the best-scoring strategy (floors and ceilings aside)."
        )
        if self.runner_up is not None:
            label, p = self.runner_up
            others = "arm that meets them" if met else "strategy"
            said.append(
                f"Every other {others} scores significantly worse; the closest, {label} "
                f"({_quality(self._facts(label).quality)}), at p={p:.2g} (paired test, Holm-adjusted)."
            )
        if self.ties:
            tied = ", ".join(f"{label} (p={p:.2f})" for label, p in self.ties.items())
            said.append(f"Statistically indistinguishable from it (paired test, Holm-adjusted): {tied}.")
        for label, reasons in self.ruled_out.items():
            said.append(
                f"{label} scores higher ({_quality(self._facts(label).quality)}) but is ruled out: {'; '.join(reasons)}."
            )
        monthly = best.monthly_update_minutes(self.constraints)
        if self.constraints.updates_per_month:
            spends = "an unmeasured time" if monthly is None else f"{monthly:.1f} min"
            said.append(
                f"At {self.constraints.updates_per_month:g} knowledge updates a month, {self.best} spends "
                f"{spends} a month absorbing them (re-training and re-indexing from a cold cache)."
            )
        return said

    @property
    def _higher(self) -> bool:
        return self.facts[0].quality.higher_is_better if self.facts else True

    def _facts(self, label: str) -> ArmFacts:
        return next(f for f in self.facts if f.label == label)


def decide(groups: Sequence[RunGroup], primary: str, constraints: Constraints) -> Decision:
    """The best arm of `groups` under `constraints`, its ties and what rules out each better arm."""
    scored = [g for g in groups if primary in g.scores]
    facts = [ArmFacts.of(g, primary) for g in scored]
    sign = 1.0 if not facts or facts[0].quality.higher_is_better else -1.0
    strategies = sorted((f for f in facts if f.reference is None), key=lambda f: -sign * f.quality.mean)
    unmet = {f.label: broken for f in strategies if (broken := f.violations(constraints))}
    feasible = [f for f in strategies if f.label not in unmet]
    if not feasible:
        return Decision(primary, constraints, facts, None, unmet=unmet)
    best = feasible[0]
    ruled_out = {f.label: unmet[f.label] for f in strategies if sign * f.quality.mean > sign * best.quality.mean}
    by_label = {g.label: g for g in scored}
    compared = _compared(by_label, best.label, feasible[1:], primary)
    ties = {label: p for label, p in compared.items() if p >= ALPHA}
    closest = next((f.label for f in feasible[1:] if f.label in compared), None)
    runner_up = (closest, compared[closest]) if closest is not None and not ties else None
    return Decision(primary, constraints, facts, best.label, ties, runner_up, ruled_out, unmet)


def _compared(groups: Mapping[str, RunGroup], best: str, others: Sequence[ArmFacts], primary: str) -> dict[str, float]:
    """The feasible arms compared with the best on their shared examples: the Holm-adjusted p-values."""
    reference = {i: s[primary] for i, s in groups[best].per_example.items() if primary in s}
    compared: dict[str, float] = {}
    for other in others:
        candidate = {i: s[primary] for i, s in groups[other.label].per_example.items() if primary in s}
        if set(candidate) & set(reference):
            compared[other.label] = paired_difference(candidate, reference)["p_value"]
    return dict(zip(compared, holm_adjusted(list(compared.values()))))


def _reference(settings: Mapping[str, Any]) -> str | None:
    for key, why in REFERENCE_SETTINGS.items():
        name, _, value = key.partition("=")
        if name in settings and (not value or settings[name] == value):
            return why
    return None


def _serving_gb(cost: Cost) -> float | None:
    memory = cost.generation.memory
    peak = memory.peak_cuda_mb if memory.peak_cuda_mb is not None else memory.peak_rss_mb
    return None if not peak else peak / 1024


def _storage_bytes(cost: Cost) -> float:
    adapter = cost.training.adapter_bytes if cost.training else 0
    index = cost.retrieval.index_bytes if cost.retrieval else 0
    return float((adapter or 0) + (index or 0))


def _train_s(cost: Cost) -> float:
    generator = cost.training.train_s if cost.training and cost.training.trainable_params else 0.0
    retriever = (cost.retrieval.retriever_train_s or 0.0) if cost.retrieval else 0.0
    return float(generator or 0.0) + float(retriever)


def _quality(summary: Summary) -> str:
    return f"{summary.mean:.3f} [{summary.ci_low:.3f}, {summary.ci_high:.3f}]"


def decision_table(decision: Decision) -> pd.DataFrame:
    """What each arm measured, in the constraints' units, and its part in the decision."""
    rows = {}
    for facts in decision.facts:
        rows[facts.label] = {
            "decision": _role(decision, facts),
            decision.primary: _quality(facts.quality),
            "batch-1 p95 latency (s)": "–" if facts.latency_s is None else f"{facts.latency_s:.2f}",
            "serving peak (GB)": "–" if facts.memory_gb is None else f"{facts.memory_gb:.2f}",
            "stored per task (MB)": f"{facts.storage_mb:.1f}",
            "training (min)": f"{facts.train_minutes:.1f}",
            "one knowledge update (min)": "–" if facts.update_minutes is None else f"{facts.update_minutes:.1f}",
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def _role(decision: Decision, facts: ArmFacts) -> str:
    if facts.reference is not None:
        return f"reference: {facts.reference}"
    if facts.label == decision.best:
        return "recommended"
    if facts.label in decision.ties:
        return f"tie (p={decision.ties[facts.label]:.2f})"
    if facts.label in decision.unmet:
        return "ruled out: " + "; ".join(decision.unmet[facts.label])
    return ""
