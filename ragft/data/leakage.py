"""Leakage checks: does a test example already appear in what a run trains on or reads?

Four checks, all on SQuAD-normalised text (lower case, no punctuation or articles):

- **train/test**: a test input equal to a train input (exact), or whose set of word n-grams has a
  Jaccard similarity of at least `near_threshold` with a train input's (near duplicate).
- **train/test/reference**: the same comparison between test and train *references*: a test answer a
  run has already been trained to write. References shorter than `min_reference_words` are not checked
  (a class label or a one-word answer is meant to recur).
- **train/test/reference/lines** (references of several lines only): each line of each test reference
  looked up among the lines of the train references. Its rate is the share of test reference lines a
  fine-tuned model has seen written verbatim; a templated line (a report's `PATIENT: 40 y, male`) is
  expected there, so this check is recorded but never stops a run (`fail`).
- **corpus/test**: a test reference found verbatim in a retrieval passage (exact), or with at least
  `near_threshold` of its word n-grams in one passage (near). References shorter than
  `min_reference_words` are not checked: a short answer ("yes", a drug name) is knowledge the corpus is
  meant to hold, not a leaked answer key.

Near duplicates are found with one sparse matrix product of n-gram indicator vectors (scipy), so that
search grows with the n-grams the texts share, not with every pair of texts; the verbatim check of
corpus/test compares each checked reference with each passage (a substring test on whole words).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import sparse

from ragft.data.text import normalize_answer
from ragft.errors import ConfigError, RagftError
from ragft.types import TaskData

MAX_LISTED = 10


class LeakageError(RagftError):
    """Test examples leak into training data or the retrieval corpus, and the config says to stop."""


def ngrams(text: str, n: int) -> set[str]:
    """Word n-grams of the normalised text (the whole text as one gram when it is shorter than n)."""
    words = normalize_answer(text).split()
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def shared_ngrams(queries: Sequence[set[str]], others: Sequence[set[str]]) -> sparse.csr_matrix:
    """Count of n-grams each query shares with each other text (queries x others, sparse)."""
    vocabulary = {gram: i for i, gram in enumerate(sorted(set().union(*queries)))} if queries else {}

    def indicator(sets: Sequence[set[str]]) -> sparse.csr_matrix:
        rows, cols = [], []
        for row, grams in enumerate(sets):
            hits = [vocabulary[g] for g in grams if g in vocabulary]
            rows += [row] * len(hits)
            cols += hits
        data = np.ones(len(rows), dtype=np.float64)
        return sparse.csr_matrix((data, (rows, cols)), shape=(len(sets), max(len(vocabulary), 1)))

    return (indicator(queries) @ indicator(others).T).tocsr()


def _best_matches(scores: sparse.csr_matrix) -> list[tuple[int, float]]:
    """Per query row: the column with the highest score and that score (-1, 0.0 where none)."""
    best = []
    for row in range(scores.shape[0]):
        start, end = scores.indptr[row], scores.indptr[row + 1]
        if start == end:
            best.append((-1, 0.0))
            continue
        top = start + int(np.argmax(scores.data[start:end]))
        best.append((int(scores.indices[top]), float(scores.data[top])))
    return best


def _leaks(
    test_ids: Sequence[str],
    exact: Sequence[int | None],
    best: Sequence[tuple[int, float]],
    other_ids: Sequence[str],
    other: str,
    near_threshold: float,
) -> list[dict[str, Any]]:
    """A test item leaks when it has an exact match, else when its best match reaches the threshold."""
    leaks = []
    for test_id, match, (column, similarity) in zip(test_ids, exact, best, strict=True):
        if match is not None:
            leaks.append({"test": test_id, other: other_ids[match], "similarity": 1.0, "kind": "exact"})
        elif column >= 0 and similarity >= near_threshold:
            leaks.append({"test": test_id, other: other_ids[column], "similarity": similarity, "kind": "near"})
    return leaks


def describe_pairs(leaks: Sequence[Mapping[str, Any]]) -> str:
    """`test~train (similarity)` for each listed leak."""
    return ", ".join(f"{x['test']}~{x.get('train', x.get('passage'))} ({x['similarity']:.2f})" for x in leaks)


def _summary(checked: int, leaks: list[dict[str, Any]], best: Sequence[float], **extra: Any) -> dict[str, Any]:
    leaks = sorted(
        ({**leak, "similarity": round(leak["similarity"], 4)} for leak in leaks), key=lambda x: -x["similarity"]
    )
    return {
        "checked": checked,
        "max_similarity": round(max([*best, *(leak["similarity"] for leak in leaks)], default=0.0), 4),
        "exact": sum(leak["kind"] == "exact" for leak in leaks),
        "near": sum(leak["kind"] == "near" for leak in leaks),
        "rate": len(leaks) / checked if checked else 0.0,
        **extra,
        "examples": leaks[:MAX_LISTED],
    }


def train_test_overlap(
    train: Sequence[tuple[str, str]], test: Sequence[tuple[str, str]], ngram: int, near_threshold: float
) -> dict[str, Any]:
    """(id, text) pairs: each test text's most similar train text, kept where it is a (near) duplicate."""
    test_grams = [ngrams(text, ngram) for _, text in test]
    train_grams = [ngrams(text, ngram) for _, text in train]
    shared = shared_ngrams(test_grams, train_grams).tocoo()
    sizes_test = np.array([len(g) for g in test_grams], dtype=np.float64)
    sizes_train = np.array([len(g) for g in train_grams], dtype=np.float64)
    union = sizes_test[shared.row] + sizes_train[shared.col] - shared.data
    jaccard = sparse.csr_matrix((shared.data / np.maximum(union, 1), (shared.row, shared.col)), shape=shared.shape)
    normalised_train = {normalize_answer(text): i for i, (_, text) in enumerate(train)}
    exact = [normalised_train.get(normalize_answer(text)) for _, text in test]
    best = _best_matches(jaccard)
    leaks = _leaks([i for i, _ in test], exact, best, [i for i, _ in train], "train", near_threshold)
    return _summary(len(test), leaks, [similarity for _, similarity in best])


def train_test_reference_overlap(
    train: Sequence[tuple[str, str]],
    test: Sequence[tuple[str, str]],
    ngram: int,
    near_threshold: float,
    min_reference_words: int,
) -> dict[str, Any]:
    """(id, reference) pairs: train/test on the references, long-enough test references only."""
    checked = [(i, text) for i, text in test if len(normalize_answer(text).split()) >= min_reference_words]
    summary = train_test_overlap(train, checked, ngram, near_threshold)
    examples = summary.pop("examples")
    return {**summary, "too_short": len(test) - len(checked), "examples": examples}


def reference_lines(text: str) -> list[str]:
    """The reference's non-empty lines, normalised."""
    return [line for line in (normalize_answer(raw) for raw in text.splitlines()) if line]


def reference_line_overlap(train: Sequence[tuple[str, str]], test: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """(id, reference) pairs: each test reference line found among the train reference lines. `by_line`
    gives the share found per line position (1 = first line), where a format's fixed order makes a
    position one field; examples name the test id and line number and the first train id holding it."""
    first_holder: dict[str, str] = {}
    for train_id, text in train:
        for line in reference_lines(text):
            first_holder.setdefault(line, train_id)
    leaks: list[dict[str, Any]] = []
    found: dict[int, list[bool]] = {}
    for test_id, text in test:
        for number, line in enumerate(reference_lines(text), start=1):
            found.setdefault(number, []).append(line in first_holder)
            if line in first_holder:
                leak = {"test": f"{test_id} line {number}", "train": first_holder[line], "similarity": 1.0}
                leaks.append({**leak, "kind": "exact", "line": line})
    checked = sum(len(hits) for hits in found.values())
    by_line = {str(number): round(sum(hits) / len(hits), 4) for number, hits in sorted(found.items())}
    return _summary(checked, leaks, [], by_line=by_line)


def corpus_test_overlap(
    corpus: Sequence[tuple[str, str]],
    references: Sequence[tuple[str, str]],
    ngram: int,
    near_threshold: float,
    min_reference_words: int,
) -> dict[str, Any]:
    """(id, text) pairs: each long-enough reference's best containment in one passage."""
    checked = [(i, text) for i, text in references if len(normalize_answer(text).split()) >= min_reference_words]
    reference_grams = [ngrams(text, ngram) for _, text in checked]
    shared = shared_ngrams(reference_grams, [ngrams(text, ngram) for _, text in corpus])
    sizes = np.array([max(len(g), 1) for g in reference_grams], dtype=np.float64)
    containment = sparse.diags(1 / sizes) @ shared if len(checked) else shared
    padded_corpus = [f" {normalize_answer(text)} " for _, text in corpus]  # padded: whole words only
    exact = [
        next((j for j, passage in enumerate(padded_corpus) if f" {normalize_answer(text)} " in passage), None)
        for _, text in checked
    ]
    best = _best_matches(sparse.csr_matrix(containment))
    leaks = _leaks([i for i, _ in checked], exact, best, [i for i, _ in corpus], "passage", near_threshold)
    return _summary(len(checked), leaks, [s for _, s in best], too_short=len(references) - len(checked))


INFORMATIONAL = frozenset({"train_test_reference_lines"})  # recorded; `fail` does not stop a run on them


def check_leakage(task: TaskData, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Every check that applies to the task's test split; raises LeakageError when `settings['fail']`
    and a check other than the INFORMATIONAL ones finds a leak."""
    if not 0 < settings["near_threshold"] <= 1:
        raise ConfigError(
            "leakage.near_threshold", f"must be in (0, 1], got {settings['near_threshold']}.", "The default is 0.8."
        )
    if settings["ngram"] < 1:
        raise ConfigError("leakage.ngram", f"must be at least 1, got {settings['ngram']}.", "The default is 3.")
    train, test = task.split("train"), task.split("test")
    train_references = [(e.id, e.reference) for e in train]
    test_references = [(e.id, e.reference) for e in test]
    report: dict[str, Any] = {
        "train_test": train_test_overlap(
            [(e.id, e.input) for e in train],
            [(e.id, e.input) for e in test],
            settings["ngram"],
            settings["near_threshold"],
        ),
        "train_test_reference": train_test_reference_overlap(
            train_references,
            test_references,
            settings["ngram"],
            settings["near_threshold"],
            settings["min_reference_words"],
        ),
    }
    if any(len(reference_lines(text)) > 1 for _, text in test_references):
        report["train_test_reference_lines"] = reference_line_overlap(train_references, test_references)
    if task.corpus:
        report["corpus_test"] = corpus_test_overlap(
            [(p.id, p.text) for p in task.corpus],
            [(e.id, e.reference) for e in test],
            settings["ngram"],
            settings["near_threshold"],
            settings["min_reference_words"],
        )
    stopping = {name: check for name, check in report.items() if name not in INFORMATIONAL}
    if settings.get("fail") and any(check["exact"] + check["near"] for check in stopping.values()):
        raise LeakageError(_describe(task.name, stopping))
    return report


def _describe(task: str, report: Mapping[str, Any]) -> str:
    lines = [f"task '{task}': test examples leak (leakage.fail is true, so nothing was run):"]
    for name, check in report.items():
        if check["exact"] + check["near"]:
            pairs = describe_pairs(check["examples"])
            lines.append(
                f"  {name}: {check['exact']} exact and {check['near']} near duplicates of {check['checked']}, e.g. {pairs}"
            )
    lines.append(
        "  Remove or rewrite those test examples (or passages), or set leakage.fail=false to record the "
        "overlap in the run and report without stopping."
    )
    return "\n".join(lines)
