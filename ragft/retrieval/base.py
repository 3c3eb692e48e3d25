"""What every retriever offers, and the ranking helpers retrievers and metrics share."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import fields, replace
from typing import Protocol

from ragft.errors import ConfigError
from ragft.record.cost import RetrievalCost
from ragft.retrieval.embeddings import Embedder
from ragft.types import Example, Passage

TRAINING_FIELDS = tuple(f.name for f in fields(RetrievalCost) if f.name.startswith("retriever_"))


class Retriever(Protocol):
    """Built once over a corpus (its models, fine-tuned on the train split where configured, and its
    index), then asked for the `k` best passages per query, best first. Its dependencies (embedder,
    fine-tuner, cross-encoder) come at construction, from its config."""

    def build(self, passages: Sequence[Passage], train_examples: Sequence[Example]) -> RetrievalCost:
        """Index `passages` (training on `train_examples` first where configured); what that cost."""

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]: ...


def reading_embedder(retriever: object) -> Embedder | None:
    """The embedder that reads each passage whole to rank it, the one with the smallest window where a
    retriever combines several (a hybrid's dense part, a reranker's first stage); None where none reads
    passages through a window (BM25). A retriever says so with a `reading_embedder()` method."""
    reads = getattr(retriever, "reading_embedder", None)
    return reads() if callable(reads) else None


def require_corpus(passages: Sequence[Passage]) -> None:
    if not passages:
        raise ConfigError(
            "task.corpus",
            "retrieval needs a corpus, but the task has none.",
            "Set task.corpus.path to a JSONL file of passages.",
        )


def with_training(cost: RetrievalCost, training: RetrievalCost | None) -> RetrievalCost:
    """`cost` (an index's) with the `retriever_train_*` figures of `training` added: times, examples and
    pairs summed, the last loss, reused only where every training was."""
    if training is None or training.retriever_train_s is None:
        return cost
    if cost.retriever_train_s is None:
        return replace(cost, **{name: getattr(training, name) for name in TRAINING_FIELDS})
    return replace(
        cost,
        retriever_train_s=cost.retriever_train_s + training.retriever_train_s,
        retriever_train_examples=(cost.retriever_train_examples or 0) + (training.retriever_train_examples or 0),
        retriever_train_pairs=(cost.retriever_train_pairs or 0) + (training.retriever_train_pairs or 0),
        retriever_train_loss=training.retriever_train_loss,
        retriever_reused=bool(cost.retriever_reused and training.retriever_reused),
    )


def document_ranking(passages: Iterable[Passage]) -> tuple[str, ...]:
    """The documents of ranked passages (chunks map to the document they came from), first hit first."""
    return tuple(dict.fromkeys(p.doc_id for p in passages))


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = 60) -> list[str]:
    """Cormack et al. (2009): score(d) = sum over rankings of 1 / (k + rank of d), rank from 1; ties keep
    the order of first appearance."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda item: -scores[item])
