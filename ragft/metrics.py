"""Metrics: each registered once by name, scored per example, aggregated with a bootstrap 95% CI.

A task selects metrics by name in `task.metrics` (name -> keyword parameters). A metric function
takes one prediction and returns a dict of named scores in [0, 1], or {} where it does not apply
(e.g. retrieval recall for an arm that retrieves nothing). A `batched` metric takes all predictions
and the run's evaluation models (`ragft.model_metrics.EvaluationModels`) and returns one dict per
prediction: metrics that run a model score a whole run at once.
"""

from __future__ import annotations

import inspect
import logging
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from scipy import stats
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from ragft.errors import ConfigError
from ragft.types import Example, Prediction

log = logging.getLogger(__name__)

MetricFn = Callable[..., dict[str, float]]


@dataclass(frozen=True)
class Metric:
    name: str
    fn: MetricFn
    higher_is_better: bool = True
    batched: bool = False
    group: str = "quality"  # "retrieval": judges the retriever, shown in the report's retrieval table


METRICS: dict[str, Metric] = {}


def register_metric(
    name: str, higher_is_better: bool = True, batched: bool = False, group: str = "quality"
) -> Callable[[MetricFn], MetricFn]:
    def decorate(fn: MetricFn) -> MetricFn:
        if name in METRICS:
            raise ValueError(f"metric '{name}' registered twice")
        METRICS[name] = Metric(name, fn, higher_is_better, batched, group)
        return fn

    return decorate


# --- text normalisation -------------------------------------------------------------------------


def normalize_answer(text: str) -> str:
    """SQuAD-style: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


@cache
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)


# --- metrics --------------------------------------------------------------------------------------


def _rouge(name: str, kind: str) -> MetricFn:
    def score(prediction: Prediction) -> dict[str, float]:
        return {name: _rouge_scorer().score(prediction.example.reference, prediction.output)[kind].fmeasure}

    score.__doc__ = f"{kind} F-measure (rouge-score) of the output against the reference."
    return score


for _name, _kind in (("rouge_1", "rouge1"), ("rouge_2", "rouge2"), ("rouge_l", "rougeL")):
    register_metric(_name)(_rouge(_name, _kind))


@register_metric("bleu")
def bleu(prediction: Prediction) -> dict[str, float]:
    """Sentence-level BLEU (sacrebleu, smoothed by default), scaled to [0, 1]; the aggregate is the mean
    over examples, so that it has a bootstrap interval (it is not corpus BLEU)."""
    import sacrebleu

    return {"bleu": sacrebleu.sentence_bleu(prediction.output, [prediction.example.reference]).score / 100}


@register_metric("chrf")
def chrf(prediction: Prediction) -> dict[str, float]:
    """Sentence-level chrF (sacrebleu), scaled to [0, 1]."""
    import sacrebleu

    return {"chrf": sacrebleu.sentence_chrf(prediction.output, [prediction.example.reference]).score / 100}


@register_metric("accuracy")
def accuracy(prediction: Prediction, labels: Sequence[str]) -> dict[str, float]:
    """Label accuracy for single-word labels: the first of `labels` named in the output (whole word,
    any case) must be the reference; an output naming none of them is wrong."""
    wanted = {normalize_answer(label) for label in labels}
    if normalize_answer(prediction.example.reference) not in wanted:
        raise ValueError(f"reference '{prediction.example.reference}' is not one of the labels {list(labels)}")
    said = next((word for word in normalize_answer(prediction.output).split() if word in wanted), None)
    return {"accuracy": float(said == normalize_answer(prediction.example.reference))}


@register_metric("exact_match")
def exact_match(prediction: Prediction) -> dict[str, float]:
    return {"exact_match": float(normalize_answer(prediction.output) == normalize_answer(prediction.example.reference))}


@register_metric("contains_reference")
def contains_reference(prediction: Prediction) -> dict[str, float]:
    """1 if the normalised reference appears, as whole words, in the normalised output: exact match for
    a model that answers in a sentence ("The answer is 15 mg before breakfast.")."""
    reference = normalize_answer(prediction.example.reference)
    return {
        "contains_reference": float(bool(reference) and f" {reference} " in f" {normalize_answer(prediction.output)} ")
    }


@register_metric("token_f1")
def token_f1(prediction: Prediction) -> dict[str, float]:
    """SQuAD token F1 between normalised output and reference."""
    predicted = normalize_answer(prediction.output).split()
    reference = normalize_answer(prediction.example.reference).split()
    common = sum((Counter(predicted) & Counter(reference)).values())
    if not predicted or not reference:
        return {"token_f1": float(predicted == reference)}
    if common == 0:
        return {"token_f1": 0.0}
    precision, recall = common / len(predicted), common / len(reference)
    return {"token_f1": 2 * precision * recall / (precision + recall)}


def report_sections(text: str) -> dict[str, str]:
    """`HEADER: value` lines of a structured report, keyed by upper-case header."""
    sections = {}
    for line in text.splitlines():
        header, sep, value = line.partition(":")
        if sep and header.strip().isupper():
            sections.setdefault(header.strip(), value.strip())
    return sections


@register_metric("field_accuracy")
def field_accuracy(
    prediction: Prediction,
    sections: Mapping[str, str],
    protocol_fields: Sequence[str] = (),
) -> dict[str, float]:
    """Share of the reference facts stated in the right report section.

    `sections` maps each fact name (a key of the example's facts) to the report header whose line must
    contain it as a whole-word, case-insensitive match. Also scores each field alone (`field/<name>`),
    the `protocol_fields` together (facts that need clinic knowledge), and `format_compliance`: every
    section header present, in the configured order.
    """
    facts = prediction.example.facts
    missing = [name for name in sections if name not in facts]
    if missing:
        raise ConfigError(
            "task.metrics.field_accuracy.sections",
            f"example '{prediction.example.id}' has no fact(s) {missing}; its facts are {sorted(facts)}.",
        )
    found = report_sections(prediction.output)
    hits = {name: float(_states(found.get(header, ""), facts[name])) for name, header in sections.items()}
    headers = list(dict.fromkeys(sections.values()))
    in_order = [h for h in found if h in headers] == headers
    scores = {"field_accuracy": float(np.mean(list(hits.values()))), "format_compliance": float(in_order)}
    if protocol_fields:
        scores["protocol_fact_accuracy"] = float(np.mean([hits[name] for name in protocol_fields]))
    scores.update({f"field/{name}": hit for name, hit in hits.items()})
    return scores


def _states(line: str, value: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(value.lower())}(?!\w)", line.lower()) is not None


@register_metric("recall_at_k", group="retrieval")
def recall_at_k(prediction: Prediction) -> dict[str, float]:
    """Share of the example's gold passages among the passages retrieved for its prompt (0 where the
    retriever found nothing; not scored where the arm does not retrieve)."""
    gold = set(prediction.example.gold_passages)
    if prediction.ranking is None or not gold:
        return {}
    return {"recall_at_k": len(gold & set(prediction.retrieved)) / len(gold)}


@register_metric("ranking", group="retrieval")
def ranking(prediction: Prediction, ks: Sequence[int] = (1, 5), ndcg_k: int = 10) -> dict[str, float]:
    """The retriever's document ranking (to the context's `depth` documents) against the gold passages:
    `recall@k` for each k, `mrr` (reciprocal rank of the first gold document, 0 if none is ranked)
    and `ndcg@<ndcg_k>` with binary relevance."""
    gold = set(prediction.example.gold_passages)
    if prediction.ranking is None or not gold:
        return {}  # the arm does not retrieve, or the example has no gold passage
    ranked = list(prediction.ranking)  # may be empty: the retriever found nothing, every score is 0
    hits = [doc in gold for doc in ranked]
    scores = {f"recall@{k}": sum(hits[:k]) / len(gold) for k in ks}
    scores["mrr"] = next((1.0 / rank for rank, hit in enumerate(hits, start=1) if hit), 0.0)
    dcg = sum(1.0 / np.log2(rank + 1) for rank, hit in enumerate(hits[:ndcg_k], start=1) if hit)
    ideal = sum(1.0 / np.log2(rank + 1) for rank in range(1, min(len(gold), ndcg_k) + 1))
    scores[f"ndcg@{ndcg_k}"] = dcg / ideal
    return scores


@register_metric("groundedness")
def groundedness(prediction: Prediction, include_input: bool = True, ignore: Sequence[str] = ()) -> dict[str, float]:
    """Share of the output's content words that occur in the passages its prompt carried.

    Words are lower-cased runs of letters and digits (punctuation separates them) and English stop
    words (articles included) are left out; `include_input` also counts words of the example's input as supported (a report may copy
    the note), and `ignore` lists words that never count (e.g. a report's fixed headers). This is the
    lexical "knowledge precision" of answer to evidence: 1.0 means every content word can be found in
    the given text; a drug or dose that appears nowhere in it lowers the score. It does not check that
    the words are combined correctly. Applies only to predictions whose prompt carried passages; an
    output with no content words is not scored.
    """
    if not prediction.passages:
        return {}
    skipped = set(ENGLISH_STOP_WORDS) | {w for phrase in ignore for w in _words(phrase)}
    words = [w for w in _words(prediction.output) if w not in skipped]
    if not words:
        return {}
    sources = [*prediction.passages, prediction.example.input] if include_input else list(prediction.passages)
    vocabulary = {w for text in sources for w in _words(text)}
    return {"groundedness": sum(w in vocabulary for w in words) / len(words)}


def _words(text: str) -> list[str]:
    """Lower-cased words and numbers; punctuation separates them ("8-year-old" is 8, year, old)."""
    return re.findall(r"[^\W_]+", text.lower())


# --- scoring and aggregation ----------------------------------------------------------------------


def resolve_metrics(selection: Mapping[str, Mapping[str, Any] | None]) -> list[tuple[Metric, dict[str, Any]]]:
    unknown = [name for name in selection if name not in METRICS]
    if unknown:
        raise ConfigError("task.metrics", f"unknown metric(s) {unknown}; registered: {sorted(METRICS)}.")
    return [(METRICS[name], dict(params or {})) for name, params in selection.items()]


def _apply(metric: Metric, params: dict[str, Any], predictions: Sequence[Prediction], models: Any) -> list[dict]:
    if metric.batched:
        return metric.fn(predictions, models, **params)
    return [metric.fn(p, **params) for p in predictions]


def check_metrics(selection: Mapping[str, Mapping[str, Any] | None], example: Example, models: Any = None) -> None:
    """Fail before any work on unknown metrics, wrong parameters, or settings that do not fit the data:
    each metric scores `example` with its own reference as the output (metrics that run a model load it
    here, so a model that is missing fails now; without `models` only their parameters are checked)."""
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
        try:
            inspect.signature(metric.fn).bind(*args, **params)
        except TypeError as err:
            raise ConfigError(key, f"{err}.", f"Parameters of {metric.name}: {inspect.signature(metric.fn)}.") from None
        if metric.batched and models is None:
            continue
        try:
            _apply(metric, params, [probe], models)
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
) -> dict[str, dict[str, float]]:
    """Score every prediction in place and return each score's mean, bootstrap 95% CI, n and direction
    and group (those of the metric that produced it). A score that is not a finite number is left out, with a
    warning: the example then counts as not scored by it."""
    producer: dict[str, Metric] = {}
    for metric, params in resolve_metrics(selection):
        for prediction, scores in zip(predictions, _apply(metric, params, predictions, models), strict=True):
            finite = {name: float(v) for name, v in scores.items() if np.isfinite(v)}
            if len(finite) < len(scores):
                log.warning("%s gave %s a non-finite score: %s", metric.name, prediction.example.id, scores)
            prediction.scores.update(finite)
            producer.update(dict.fromkeys(finite, metric))
    return {
        name: {
            **mean_with_ci([p.scores[name] for p in predictions if name in p.scores], seed),
            "higher_is_better": metric.higher_is_better,
            "group": metric.group,
        }
        for name, metric in producer.items()
    }


def mean_with_ci(values: Sequence[float], seed: int = 0, resamples: int = 1000) -> dict[str, float]:
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


from ragft import model_metrics  # noqa: E402, F401  (registers the metrics that run a model)
