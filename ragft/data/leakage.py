"""Leakage checks: does a test example already appear in what a run trains on or reads?

Two checks, both on SQuAD-normalised text (lower case, no punctuation or articles):

- **train/test**: a test input equal to a train input (exact), or whose set of word n-grams has a
  Jaccard similarity of at least `near_threshold` with a train input's (near duplicate).
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


def check_leakage(task: TaskData, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Both checks for the task's test split; raises LeakageError when `settings['fail']` and any leak."""
    if not 0 < settings["near_threshold"] <= 1:
        raise ConfigError(
            "leakage.near_threshold", f"must be in (0, 1], got {settings['near_threshold']}.", "The default is 0.8."
        )
    if settings["ngram"] < 1:
        raise ConfigError("leakage.ngram", f"must be at least 1, got {settings['ngram']}.", "The default is 3.")
    test = task.split("test")
    report: dict[str, Any] = {
        "train_test": train_test_overlap(
            [(e.id, e.input) for e in task.split("train")],
            [(e.id, e.input) for e in test],
            settings["ngram"],
            settings["near_threshold"],
        )
    }
    if task.corpus:
        report["corpus_test"] = corpus_test_overlap(
            [(p.id, p.text) for p in task.corpus],
            [(e.id, e.reference) for e in test],
            settings["ngram"],
            settings["near_threshold"],
            settings["min_reference_words"],
        )
    if settings.get("fail") and any(check["exact"] + check["near"] for check in report.values()):
        raise LeakageError(_describe(task.name, report))
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
