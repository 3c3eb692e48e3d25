"""Hybrid retrieval: several retrievers (e.g. dense and BM25) fused by reciprocal rank."""

from __future__ import annotations

from collections.abc import Sequence

from ragft.config.values import NonNegativeInt, PositiveInt
from ragft.record.cost import RetrievalCost
from ragft.retrieval.base import Retriever, reading_embedder, reciprocal_rank_fusion
from ragft.retrieval.embeddings import Embedder
from ragft.types import Example, Passage


class HybridRetriever:
    """Each retriever ranks `depth` passages; the fused ranking orders passages by the sum of
    1 / (rrf_k + rank) over the rankings they appear in (Cormack et al. 2009)."""

    def __init__(self, retrievers: Sequence[Retriever], depth: PositiveInt = 20, rrf_k: NonNegativeInt = 60) -> None:
        self.retrievers = list(retrievers)
        self.depth = depth
        self.rrf_k = rrf_k
        self.by_id: dict[str, Passage] = {}

    def reading_embedder(self) -> Embedder | None:
        """Of its retrievers' embedders, the one with the smallest window."""
        embedders = [e for e in map(reading_embedder, self.retrievers) if e is not None]
        return min(embedders, key=lambda e: e.window, default=None)

    def build(self, passages: Sequence[Passage], train_examples: Sequence[Example] = ()) -> RetrievalCost:
        """Build every retriever over the corpus; their sizes and times add up."""
        costs = [retriever.build(passages, train_examples) for retriever in self.retrievers]
        self.by_id = {p.id: p for p in passages}
        return RetrievalCost.combined(costs)

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        rankings = [r.search(queries, max(k, self.depth)) for r in self.retrievers]
        fused = []
        for per_query in zip(*rankings):
            ids = reciprocal_rank_fusion([[p.id for p in ranking] for ranking in per_query], self.rrf_k)
            fused.append([self.by_id[i] for i in ids[:k]])
        return fused
