"""Run records gathered for the report: the runs of one configuration form one `RunGroup`.

Runs that differ only in their seed share their identity's `group_key` and form one group: its
per-example score is the mean over the seeds, its interval is bootstrapped over examples, and the
spread of the seeds' means is shown beside it. A group of one run reports that run's own scores. Only
finished runs are grouped; a failed run has no scores and appears in the report's failed table alone.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ragft.errors import one_line
from ragft.eval.registry import mean_with_ci
from ragft.record.cost import Cost
from ragft.record.run import (
    PREDICTIONS_FILE,
    RECORD_FILE,
    UNREADABLE,
    RunIdentity,
    RunRecord,
    Scores,
    StageScores,
    Summary,
    TaskScore,
    read_predictions,
    read_record,
    read_runs,
    run_dirs,
    warn_unreadable,
)

log = logging.getLogger(__name__)

ARM_ORDER = ("zero_shot", "few_shot", "rag", "lora", "lora_rag")
REPLACE_FINISHED = "delete its run folder and run its arm again"  # a finished record is never re-run


@dataclass
class LoadedRun:
    """A run's record with its per-example predictions (none for a failed run)."""

    record: RunRecord
    predictions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.record.status == "finished"


@dataclass(frozen=True)
class Unreadable:
    """A run folder the report leaves out: its record or predictions could not be read."""

    folder: Path
    reason: str  # one line: the file and what is wrong with it


def load_runs(exp_dir: Path) -> list[LoadedRun]:
    """Every readable run of an experiment (finished or failed), finished runs with their predictions;
    see `load_experiment` for the folders left out."""
    return load_experiment(exp_dir)[0]


def load_experiment(exp_dir: Path) -> tuple[list[LoadedRun], list[Unreadable]]:
    """The readable runs of an experiment, and the run folders left out because their record (damaged,
    of another schema) or a finished run's predictions cannot be read. A left-out file is warned about
    once per process, naming it (`read_runs` warns about records); it never stops the report."""
    runs, unreadable = [], []
    read = read_runs(exp_dir)
    for run_dir, record in read:
        try:
            runs.append(LoadedRun(record, _predictions(run_dir) if record.status == "finished" else []))
        except UNREADABLE as err:
            unreadable.append(Unreadable(run_dir, one_line(f"{PREDICTIONS_FILE}: {err}")))
            warn_unreadable(run_dir / PREDICTIONS_FILE, err, REPLACE_FINISHED)
    read_dirs = {run_dir for run_dir, _ in read}
    for run_dir in run_dirs(exp_dir):
        if run_dir not in read_dirs and (reason := _record_problem(run_dir)) is not None:
            unreadable.append(Unreadable(run_dir, reason))
    return runs, sorted(unreadable, key=lambda u: u.folder)


def _predictions(run_dir: Path) -> list[dict[str, Any]]:
    """A finished run's predictions, each checked for what the report reads (a string `id`, numeric
    `scores`, a `breakdowns` mapping): a row of another shape fails here, naming its line, rather than
    somewhere in a table."""
    rows = read_predictions(run_dir)
    for line, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            raise ValueError(f"line {line}: not an object with a string `id`")
        scores = row.get("scores")
        if not isinstance(scores, dict) or not all(_is_number(v) for v in scores.values()):
            raise ValueError(f"line {line}: `scores` is not an object of numbers")
        if not isinstance(row.get("breakdowns") or {}, dict) or not isinstance(
            row.get("category", ""), (str, type(None))
        ):
            raise ValueError(f"line {line}: `breakdowns` is not an object or `category` not a string")
    return rows


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _record_problem(run_dir: Path) -> str | None:
    """Why a run folder's record cannot be read (None where it now can be, or has gone: a run was
    committed or replaced since the folder was listed)."""
    try:
        read_record(run_dir)
    except FileNotFoundError:
        return None
    except UNREADABLE as err:
        return one_line(f"{RECORD_FILE}: {err}")
    return None


@dataclass
class RunGroup:
    """The finished runs of one configuration, one per seed, in seed order."""

    label: str
    runs: list[LoadedRun]

    @property
    def records(self) -> list[RunRecord]:
        return [run.record for run in self.runs]

    @property
    def identity(self) -> RunIdentity:
        return self.runs[0].record.identity

    @property
    def seeds(self) -> list[int]:
        return [record.identity.seed for record in self.records]

    @property
    def settings(self) -> dict[str, Any]:
        """The result-relevant config of the group, seeds left out (they differ within a group)."""
        return {key: value for key, value in self.identity.settings.items() if not is_seed(key)}

    @property
    def predictions(self) -> list[dict[str, Any]]:
        """The first seed's per-example records (for examples shown side by side)."""
        return self.runs[0].predictions

    @cached_property
    def per_example(self) -> dict[str, dict[str, float]]:
        """example id -> score name -> mean over the seeds that scored it."""
        collected: dict[str, dict[str, list[float]]] = {}
        for run in self.runs:
            for prediction in run.predictions:
                for name, value in prediction["scores"].items():
                    collected.setdefault(prediction["id"], {}).setdefault(name, []).append(value)
        return {i: {n: float(np.mean(v)) for n, v in names.items()} for i, names in collected.items()}

    @cached_property
    def scores(self) -> Scores:
        """Each score's summary: the run's own for one seed; over several, bootstrapped over the examples'
        means with the seeds' standard deviation."""
        if len(self.runs) == 1:
            return self.records[0].scores
        names = dict.fromkeys(name for record in self.records for name in record.scores)
        return {name: self._over_seeds(name) for name in names}

    def _over_seeds(self, name: str) -> Summary:
        values = [scores[name] for scores in self.per_example.values() if name in scores]
        per_seed = [record.scores[name] for record in self.records if name in record.scores]
        spread = float(np.std([s.mean for s in per_seed], ddof=1)) if len(per_seed) > 1 else None
        return summarise(values, like=per_seed[0], seed_sd=spread)

    @cached_property
    def cost(self) -> Cost:
        """The seeds' costs figure by figure: numbers averaged, flags true if true for any seed."""
        return averaged([record.cost for record in self.records])

    @property
    def leakage(self) -> dict[str, Any]:
        return self.records[0].leakage

    @property
    def trains(self) -> bool:
        """Whether the run trained the generator (an untrained base, 4-bit or not, trains nothing)."""
        return bool(self.cost.trainable_params)

    @cached_property
    def other_tests(self) -> dict[str, TaskScore]:
        """Scores on other test sets (`evaluate_also`): per-example means over the seeds, summarised."""
        names = dict.fromkeys(name for record in self.records for name in record.other_tests)
        return {
            name: _over_seeds([r.other_tests[name] for r in self.records if name in r.other_tests]) for name in names
        }

    @property
    def stages(self) -> list[StageScores]:
        """Sequential fine-tuning: per stage, the scores on its and every earlier stage's test set (first seed)."""
        return self.records[0].stages


def _over_seeds(scored: Sequence[TaskScore]) -> TaskScore:
    """One other test set's scores over several seeds: each example's mean, bootstrapped."""
    if len(scored) == 1:
        return scored[0]
    per_example: dict[str, list[float]] = {}
    for score in scored:
        for example, value in score.per_example.items():
            per_example.setdefault(example, []).append(value)
    means = {example: float(np.mean(values)) for example, values in per_example.items()}
    first = scored[0]
    return TaskScore(first.task, first.metric, summarise(list(means.values()), like=first.summary), means)


def summarise(values: Sequence[float], like: Summary, seed_sd: float | None = None) -> Summary:
    """The mean and bootstrap interval of `values`, scored in the direction and group of `like`."""
    aggregate = mean_with_ci(values)
    return Summary(
        mean=aggregate["mean"],
        ci_low=aggregate["ci_low"],
        ci_high=aggregate["ci_high"],
        n=int(aggregate["n"]),
        higher_is_better=like.higher_is_better,
        group=like.group,
        seed_sd=seed_sd,
    )


def averaged(values: Sequence[Any]) -> Any:
    """The seeds' values of one cost figure combined: numbers averaged (kept as they are where every seed
    has the same), flags true if true for any seed,
    nested records field by field, anything else (text, histories) the first seed's; None where no seed
    recorded it."""
    present = [value for value in values if value is not None]
    if not present:
        return None
    first = present[0]
    if len(present) == 1:
        return first
    if is_dataclass(first) and not isinstance(first, type):
        return replace(first, **{f.name: averaged([getattr(v, f.name) for v in present]) for f in fields(first)})
    if all(isinstance(value, bool) for value in present):
        return any(present)
    if all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in present):
        return first if len(set(present)) == 1 else float(np.mean(present))  # a setting stays a whole number
    return first


def is_seed(key: str) -> bool:
    """A dotted settings key that names a seed (`seed`, `training.seed`)."""
    return key.rsplit(".", 1)[-1] == "seed"


def several_experiments(records: Iterable[RunRecord]) -> bool:
    return len({record.identity.exp for record in records}) > 1


def arm_rank(identity: RunIdentity) -> tuple[str, int, str]:
    """Experiment, then the usual arms in their usual order, then the others by name."""
    rank = {arm: i for i, arm in enumerate(ARM_ORDER)}
    return identity.exp, rank.get(identity.arm, len(rank)), identity.arm


def group_runs(runs: Sequence[LoadedRun]) -> list[RunGroup]:
    """Finished runs with the same experiment, arm and group key (all but the seed) become one group,
    labelled by arm (prefixed by the experiment when several are compared; suffixed by the group key
    where several configurations share an arm). Failed runs are left out."""
    keyed: dict[tuple[str, str, str], list[LoadedRun]] = {}
    for run in runs:
        if run.finished:
            identity = run.record.identity
            keyed.setdefault((identity.exp, identity.arm, identity.group_key), []).append(run)
    prefix = several_experiments(run.record for run in runs)
    shared = Counter((exp, arm) for exp, arm, _ in keyed)
    groups = []
    for (exp, arm, group_key), members in keyed.items():
        label = f"{exp}/{arm}" if prefix else arm
        label += f" ({group_key[:6]})" if shared[exp, arm] > 1 else ""
        groups.append(RunGroup(label, sorted(members, key=lambda run: run.record.identity.seed)))
    return sorted(groups, key=lambda g: (*arm_rank(g.identity), g.identity.group_key))


def default_baseline(groups: Sequence[RunGroup]) -> str:
    return next((g.label for g in groups if g.identity.arm == "zero_shot"), groups[0].label)


def primary_metric(groups: Sequence[RunGroup]) -> str:
    """The metric the runs' task leads with where the runs scored it, else the first metric they scored."""
    names = {name for g in groups for name in g.scores}
    chosen = groups[0].identity.primary_metric
    return chosen if chosen in names or not names else sorted(names)[0]


def headline_metrics(groups: Sequence[RunGroup]) -> list[str]:
    """The quality scores (per-field scores and the retrieval group's scores have their own tables)."""
    retrieval = set(retrieval_metrics(groups))
    return list(dict.fromkeys(n for g in groups for n in g.scores if "/" not in n and n not in retrieval))


def retrieval_metrics(groups: Sequence[RunGroup]) -> list[str]:
    """Scores of the metrics registered in the retrieval group."""
    return list(dict.fromkeys(n for g in groups for n, s in g.scores.items() if s.group == "retrieval"))
