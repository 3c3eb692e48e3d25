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
from ragft.types import Prediction, TaskData


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


@register_metric("field_accuracy", lower_is_better=("hedge_rate",))
def field_accuracy(
    prediction: Prediction,
    sections: Mapping[str, str],
    protocol_fields: Sequence[str] = (),
    task: TaskData | None = None,
) -> dict[str, float]:
    """Share of the reference facts stated, alone, in the right report section.

    `sections` maps each fact name (a key of the example's facts) to the report header whose section
    must state it. A section is its `HEADER:` line and any following lines without a header (a header
    given twice is one section). Each section is read as one statement: the values it names are the
    whole-word, case-insensitive matches of the task's values for its fields (every value `task` holds
    for each fact, in every split) that lie inside no longer match (so "anaemia" inside "iron deficiency
    anaemia" is not named; "1 week" never matches inside "11 weeks"). A section that names more than
    one value of one of its fields hedges; a field is right only when its section names its reference
    value, no other value of that field, and does not hedge (a TREATMENT line offering two doses of the
    right drug states neither the dose nor the treatment). So an output that lists the alternatives
    gets no credit for them.

    Also scores each field alone (`field/<name>`), the `protocol_fields` together (facts that need
    clinic knowledge), `format_compliance` (every section header present, in the configured order) and
    `hedge_rate` (1 where any section hedges; lower is better).
    """
    facts = prediction.example.facts
    missing = [name for name in sections if name not in facts]
    if missing:
        raise ConfigError(
            "task.metrics.field_accuracy.sections",
            f"example '{prediction.example.id}' has no fact(s) {missing}; its facts are {sorted(facts)}.",
        )
    if task is None:
        raise ValueError("field_accuracy reads each field's values from the task's data: pass `task`")
    named = _named_in_sections(prediction.output, sections, field_values(task, tuple(sections)), facts)
    hedging = {header for name, header in sections.items() if len(named[name]) > 1}
    hits = {
        name: float(named[name] == {facts[name].lower()} and header not in hedging) for name, header in sections.items()
    }
    headers = list(dict.fromkeys(sections.values()))
    in_order = [h for h in report_sections(prediction.output) if h in headers] == headers
    scores = {
        "field_accuracy": float(np.mean(list(hits.values()))),
        "format_compliance": float(in_order),
        "hedge_rate": float(bool(hedging)),
    }
    if protocol_fields:
        scores["protocol_fact_accuracy"] = float(np.mean([hits[name] for name in protocol_fields]))
    scores.update({f"field/{name}": hit for name, hit in hits.items()})
    return scores


def _named_in_sections(
    output: str, sections: Mapping[str, str], values: Mapping[str, frozenset[str]], facts: Mapping[str, str]
) -> dict[str, set[str]]:
    """fact name -> the values of it that its section of `output` names (its reference value counts as
    one of its values even where the task's data lacks it)."""
    found = section_texts(output)
    named: dict[str, set[str]] = {}
    for header in dict.fromkeys(sections.values()):
        fields = [name for name, h in sections.items() if h == header]
        named.update(_named_values(found.get(header, ""), {f: values[f] | {facts[f].lower()} for f in fields}))
    return named


def section_texts(text: str) -> dict[str, str]:
    """Each header's section of a structured report: its `HEADER:` lines with the lines that follow
    each up to the next header (text before the first header belongs to none), joined by newlines."""
    parts: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        header, sep, value = line.partition(":")
        if sep and header.strip().isupper():
            current = parts.setdefault(header.strip(), [])
            current.append(value.strip())
        elif current is not None:
            current.append(line.strip())
    return {header: "\n".join(lines) for header, lines in parts.items()}


def field_values(task: TaskData, names: tuple[str, ...]) -> dict[str, frozenset[str]]:
    """Every value (lower-cased) that the task's examples, in all splits, hold for each fact in `names`:
    the values a report field can take. Computed once per task object and fact names."""
    cached = _VALUES.get((id(task), names))
    if cached is not None and cached[0] is task:
        return cached[1]
    values = {
        name: frozenset(
            e.facts[name].lower() for examples in task.splits.values() for e in examples if e.facts.get(name)
        )
        for name in names
    }
    _VALUES.clear()  # one task at a time: a run scores one task, then maybe another test set
    _VALUES[(id(task), names)] = (task, values)
    return values


_VALUES: dict[tuple[int, tuple[str, ...]], tuple[TaskData, dict[str, frozenset[str]]]] = {}


def _named_values(text: str, vocabulary: Mapping[str, frozenset[str]]) -> dict[str, set[str]]:
    """field -> the values of it that `text` names: whole-word matches of any field's values that lie
    inside no longer match (of any field of the section)."""
    matches = [
        (m.start(), m.end(), name, value)
        for name, values in vocabulary.items()
        for value in values
        if value
        for m in re.finditer(_whole(value), text.lower())
    ]
    named: dict[str, set[str]] = {name: set() for name in vocabulary}
    for start, end, name, value in matches:
        if not any(s <= start and end <= e and (s, e) != (start, end) for s, e, _, _ in matches):
            named[name].add(value)
    return named


@cache
def _whole(value: str) -> re.Pattern[str]:
    """`value` as whole words: no letter or digit (nor a decimal point and digit) touches it."""
    return re.compile(rf"(?<!\w)(?<!\d\.){re.escape(value)}(?!\w)(?!\.\d)")


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
