"""What every retriever offers, and the ranking helpers retrievers and metrics share."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from ragft.errors import ConfigError
from ragft.types import Passage


class Retriever(Protocol):
    """Built once over a corpus, then asked for the `k` best passages per query, best first."""

    name: str
    stats: dict[str, float]

    def build(self, passages: Sequence[Passage], resources: Any) -> None: ...

    def search(self, queries: Sequence[str], k: int, resources: Any) -> list[list[Passage]]: ...


def require_corpus(passages: Sequence[Passage]) -> None:
    if not passages:
        raise ConfigError(
            "task.corpus",
            "retrieval needs a corpus, but the task has none.",
            "Set task.corpus.path to a JSONL file of passages.",
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
