"""A second stage: a cross-encoder rescoring the first stage's top passages for each query."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ragft.retrieval.base import Retriever
from ragft.types import Passage


class RerankedRetriever:
    """The first stage ranks `depth` passages; the cross-encoder `reranker` (any sentence-transformers
    CrossEncoder, loaded offline) scores each (query, passage) pair and the best `k` are returned. With
    `reranker.finetune`, the cross-encoder is first trained from `reranker.source` on the task's train
    split (ragft.retrieval.finetune), cached."""

    def __init__(
        self,
        first_stage: Retriever,
        reranker: Mapping[str, Any],
        name: str = "reranked",
        depth: int = 20,
    ) -> None:
        self.name = name
        self.first_stage = first_stage
        self.reranker_cfg = reranker
        self.depth = depth
        self.model: Any = None
        self.stats: dict[str, float] = {}

    def build(self, passages: Sequence[Passage], resources: Any) -> None:
        from ragft.models.loading import load_cross_encoder
        from ragft.models.sources import resolve_source

        self.first_stage.build(passages, resources)
        settings, train_stats = dict(self.reranker_cfg), {}
        if settings.get("finetune") is not None:
            from ragft.retrieval.finetune import finetune_reranker

            base = resolve_source(settings["source"], "retriever.reranker.source")
            settings["source"], train_stats = finetune_reranker(
                base, resources.embedder, resources.train_pool, passages, settings["finetune"]
            )
        self.model = load_cross_encoder(settings)
        self.stats = {**self.first_stage.stats, **train_stats, "rerank_s": 0.0, "reranked_pairs": 0}

    def search(self, queries: Sequence[str], k: int, resources: Any) -> list[list[Passage]]:
        candidates = self.first_stage.search(queries, max(k, self.depth), resources)
        pairs = [(q, p.text) for q, row in zip(queries, candidates) for p in row]
        start = time.perf_counter()
        scores = self.model.predict(pairs, batch_size=self.reranker_cfg.get("batch_size", 32), show_progress_bar=False)
        self.stats["rerank_s"] = self.stats.get("rerank_s", 0.0) + time.perf_counter() - start
        self.stats["reranked_pairs"] = self.stats.get("reranked_pairs", 0) + len(pairs)
        reranked, offset = [], 0
        for row in candidates:
            row_scores = np.asarray(scores[offset : offset + len(row)], dtype=np.float64)
            offset += len(row)
            order = np.argsort(-row_scores, kind="stable")[:k]
            reranked.append([row[i] for i in order])
        return reranked
