"""Hybrid retrieval: several retrievers (e.g. dense and BM25) fused by reciprocal rank."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragft.retrieval.base import Retriever, reciprocal_rank_fusion
from ragft.types import Passage


class HybridRetriever:
    """Each retriever ranks `depth` passages; the fused ranking orders passages by the sum of
    1 / (rrf_k + rank) over the rankings they appear in (Cormack et al. 2009)."""

    def __init__(self, retrievers: Sequence[Retriever], name: str = "hybrid", depth: int = 20, rrf_k: int = 60) -> None:
        self.name = name
        self.retrievers = list(retrievers)
        self.depth = depth
        self.rrf_k = rrf_k
        self.by_id: dict[str, Passage] = {}
        self.stats: dict[str, float] = {}

    def build(self, passages: Sequence[Passage], resources: Any) -> None:
        self.stats = {}
        for retriever in self.retrievers:
            retriever.build(passages, resources)
            for key, value in retriever.stats.items():  # sizes and times add up; reused only if all were
                if isinstance(value, bool):
                    self.stats[key] = self.stats.get(key, True) and value
                else:
                    self.stats[key] = value if key == "corpus_passages" else self.stats.get(key, 0) + value
        self.by_id = {p.id: p for p in passages}

    def search(self, queries: Sequence[str], k: int, resources: Any) -> list[list[Passage]]:
        rankings = [r.search(queries, max(k, self.depth), resources) for r in self.retrievers]
        fused = []
        for per_query in zip(*rankings):
            ids = reciprocal_rank_fusion([[p.id for p in ranking] for ranking in per_query], self.rrf_k)
            fused.append([self.by_id[i] for i in ids[:k]])
        return fused
