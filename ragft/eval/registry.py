"""Metrics: each registered once by name, scored per example, aggregated with a bootstrap 95% CI.

A task selects metrics by name in `task.metrics` (name -> keyword parameters). A metric function
takes one prediction and returns a dict of named scores in [0, 1], or {} where it does not apply
(e.g. retrieval recall for an arm that retrieves nothing). A `batched` metric takes all predictions
and the run's evaluation models (`ragft.eval.model.EvaluationModels`) and returns one dict per
prediction: metrics that run a model score a whole run at once. A metric that declares a `task`
parameter also receives the task's data (`ragft.types.TaskData`, every split): what a single example
cannot tell it, such as every value a report field takes in the task (`field_accuracy`); `task` is
ragft's to pass, never a setting in `task.metrics`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar

import numpy as np
from scipy import stats

from ragft.errors import ConfigError
from ragft.record.run import Scores, Summary
from ragft.types import Example, Prediction, TaskData

log = logging.getLogger(__name__)

MetricFn = Callable[..., dict[str, float]]  # one prediction (and the metric's parameters) -> its scores
BatchedMetricFn = Callable[..., list[dict[str, float]]]  # all predictions and the models -> one dict each
_Fn = TypeVar("_Fn", bound=MetricFn | BatchedMetricFn)


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[..., Any]  # a MetricFn, or a BatchedMetricFn where `batched`
    higher_is_better: bool = True
    batched: bool = False
    group: str = "quality"  # "retrieval": judges the retriever, shown in the report's retrieval table
    lower_is_better: tuple[str, ...] = ()  # scores of this metric whose direction is the opposite one

    def higher_is_better_for(self, score: str) -> bool:
        """The direction of one of the metric's scores (`field_accuracy` is better high, its
        `hedge_rate` low)."""
        return self.higher_is_better != (score in self.lower_is_better)

    @property
    def wants_task(self) -> bool:
        """Whether the metric declares a `task` parameter (it then receives the task's data)."""
        return "task" in inspect.signature(self.fn).parameters


METRICS: dict[str, Metric] = {}


def register_metric(
    name: str,
    higher_is_better: bool = True,
    batched: bool = False,
    group: str = "quality",
    lower_is_better: Sequence[str] = (),
) -> Callable[[_Fn], _Fn]:
    def decorate(fn: _Fn) -> _Fn:
        if name in METRICS:
            raise ValueError(f"metric '{name}' registered twice")
        METRICS[name] = Metric(name, fn, higher_is_better, batched, group, tuple(lower_is_better))
        return fn

    return decorate


# --- scoring and aggregation ----------------------------------------------------------------------


def resolve_metrics(selection: Mapping[str, Mapping[str, Any] | None]) -> list[tuple[Metric, dict[str, Any]]]:
    unknown = [name for name in selection if name not in METRICS]
    if unknown:
        raise ConfigError("task.metrics", f"unknown metric(s) {unknown}; registered: {sorted(METRICS)}.")
    return [(METRICS[name], dict(params or {})) for name, params in selection.items()]


def _apply(
    metric: Metric, params: dict[str, Any], predictions: Sequence[Prediction], models: Any, task: TaskData | None
) -> list[dict[str, float]]:
    if metric.wants_task:
        if task is None:
            raise TypeError(f"metric '{metric.name}' scores against the task's data: pass `task` to score it")
        params = {**params, "task": task}
    if metric.batched:
        return metric.fn(predictions, models, **params)
    return [metric.fn(p, **params) for p in predictions]


def check_metrics(
    selection: Mapping[str, Mapping[str, Any] | None],
    example: Example,
    models: Any = None,
    task: TaskData | None = None,
) -> None:
    """Fail before any work on unknown metrics, wrong parameters, or settings that do not fit the data:
    each metric scores `example` with its own reference as the output (metrics that run a model load it
    here, so a model that is missing fails now; without `models` only their parameters are checked, and
    likewise without `task` for metrics that read the task's data)."""
    if not selection:
        raise ConfigError(
            "task.metrics",
            "selects no metric, so nothing would be scored.",
            'Select one, e.g. "+task.metrics={rouge_l: {}}".',
        )
    gold = example.gold_passages
    probe = Prediction(example=example, prompt="", output=example.reference, retrieved=gold, ranking=gold)
    for metric, params in resolve_metrics(selection):
        key = f"task.metrics.{metric.name}"
        args = ([probe], models) if metric.batched else (probe,)
        if metric.wants_task and "task" in params:
            raise ConfigError(key, "sets `task`, which is the task's data that ragft passes, not a setting.")
        given = {**params, "task": task} if metric.wants_task else params
        try:
            inspect.signature(metric.fn).bind(*args, **given)
        except TypeError as err:
            raise ConfigError(key, f"{err}.", f"Parameters of {metric.name}: {inspect.signature(metric.fn)}.") from None
        if (metric.batched and models is None) or (metric.wants_task and task is None):
            continue
        try:
            _apply(metric, params, [probe], models, task)
        except (KeyError, ValueError, TypeError) as err:
            raise ConfigError(key, f"does not fit example '{example.id}': {err!r}.") from None


def primary_metric(task: Mapping[str, Any]) -> str:
    """The task's `primary_metric`, else its first quality metric, else its first metric: the score a
    run's other test sets, its stages and its report lead with."""
    chosen = task.get("primary_metric")
    if chosen:
        return str(chosen)
    selected = list(task.get("metrics") or {})
    quality = [name for name in selected if name in METRICS and METRICS[name].group == "quality"]
    return (quality or selected)[0]


def score_predictions(
    predictions: Sequence[Prediction],
    selection: Mapping[str, Mapping[str, Any] | None],
    seed: int = 0,
    models: Any = None,
    task: TaskData | None = None,
) -> Scores:
    """Score every prediction in place and return each score's mean, bootstrap 95% CI, n and direction
    and group (those of the metric that produced it). A score that is not a finite number is left out, with a
    warning: the example then counts as not scored by it. `task` is the data of the task the predictions
    answer, for metrics that read it (see the module's docstring)."""
    producer: dict[str, Metric] = {}
    for metric, params in resolve_metrics(selection):
        for prediction, scores in zip(predictions, _apply(metric, params, predictions, models, task), strict=True):
            finite = {name: float(v) for name, v in scores.items() if np.isfinite(v)}
            if len(finite) < len(scores):
                log.warning("%s gave %s a non-finite score: %s", metric.name, prediction.example.id, scores)
            prediction.scores.update(finite)
            producer.update(dict.fromkeys(finite, metric))
    return {
        name: Summary(
            **mean_with_ci([p.scores[name] for p in predictions if name in p.scores], seed),
            higher_is_better=metric.higher_is_better_for(name),
            group=metric.group,
        )
        for name, metric in producer.items()
    }


class Interval(TypedDict):
    """A mean with its 95% bootstrap interval and the number of values it is taken over."""

    mean: float
    ci_low: float
    ci_high: float
    n: int


def mean_with_ci(values: Sequence[float], seed: int = 0, resamples: int = 1000) -> Interval:
    """Mean and percentile-bootstrap 95% confidence interval (scipy.stats.bootstrap) of the finite values."""
    data = np.asarray(values, dtype=float)
    data = data[np.isfinite(data)]
    if not len(data):
        return {"mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}
    mean = float(data.mean())
    if len(data) < 2 or np.ptp(data) == 0:
        return {"mean": mean, "ci_low": mean, "ci_high": mean, "n": len(data)}
    result = stats.bootstrap(
        (data,),
        np.mean,
        confidence_level=0.95,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return {"mean": mean, "ci_low": float(interval.low), "ci_high": float(interval.high), "n": len(data)}
