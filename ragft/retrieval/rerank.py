"""A second stage: a cross-encoder rescoring the first stage's top passages for each query."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ragft.config.values import PositiveInt
from ragft.record.cost import RetrievalCost
from ragft.retrieval.base import Retriever, reading_embedder, with_training
from ragft.retrieval.embeddings import Embedder
from ragft.retrieval.finetune import RerankerFinetune
from ragft.types import Example, Passage


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder from `source` (a local folder or a model in the cache),
    loaded offline when the retriever is built. With `finetune`, it is first trained from `source` on
    the task's train split, cached."""

    def __init__(
        self, source: str, batch_size: PositiveInt, max_length: PositiveInt, finetune: RerankerFinetune | None = None
    ) -> None:
        self.source = source
        self.batch_size = batch_size
        self.max_length = max_length
        self.finetune = finetune
        self.model: Any = None

    def load(self, passages: Sequence[Passage], train_examples: Sequence[Example]) -> RetrievalCost | None:
        """Load the model (trained first where configured); what training cost, if it trained."""
        from ragft.models.loading import load_cross_encoder
        from ragft.models.sources import resolve_source

        source, training = resolve_source(self.source, "retriever.reranker.source"), None
        if self.finetune is not None:
            source, training = self.finetune.train(source, train_examples, passages)
        self.model = load_cross_encoder({"source": source, "max_length": self.max_length})
        return training

    def scores(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """One relevance score per (query, passage) pair."""
        scores = self.model.predict(list(pairs), batch_size=self.batch_size, show_progress_bar=False)
        return np.asarray(scores, dtype=np.float64)


class RerankedRetriever:
    """The first stage ranks `depth` passages; the `reranker` scores each (query, passage) pair and the
    best `k` are returned."""

    def __init__(self, first_stage: Retriever, reranker: CrossEncoderReranker, depth: PositiveInt = 20) -> None:
        self.first_stage = first_stage
        self.reranker = reranker
        self.depth = depth
        self.cost = RetrievalCost()

    def reading_embedder(self) -> Embedder | None:
        """The first stage's: it chooses the candidates the cross-encoder sees."""
        return reading_embedder(self.first_stage)

    def build(self, passages: Sequence[Passage], train_examples: Sequence[Example] = ()) -> RetrievalCost:
        """The first stage's cost with the reranker's training added; `reranked_pairs` then counts the
        pairs the cross-encoder scores as queries are asked."""
        first = self.first_stage.build(passages, train_examples)
        training = self.reranker.load(passages, train_examples)
        self.cost = replace(with_training(first, training), reranked_pairs=0)
        return self.cost

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        candidates = self.first_stage.search(queries, max(k, self.depth))
        pairs = [(q, p.text) for q, row in zip(queries, candidates) for p in row]
        scores = self.reranker.scores(pairs)
        self.cost.reranked_pairs = (self.cost.reranked_pairs or 0) + len(pairs)
        reranked, offset = [], 0
        for row in candidates:
            row_scores = scores[offset : offset + len(row)]
            offset += len(row)
            order = np.argsort(-row_scores, kind="stable")[:k]
            reranked.append([row[i] for i in order])
        return reranked
