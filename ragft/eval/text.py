"""Metrics of the output's text against the reference: ROUGE, BLEU, chrF, exact match, token F1,
label accuracy, structured-report fields, and groundedness in the passages the prompt carried."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from ragft.data.text import normalize_answer
from ragft.errors import ConfigError
from ragft.eval.registry import MetricFn, register_metric
from ragft.types import Prediction


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
    sections: dict[str, str] = {}
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
