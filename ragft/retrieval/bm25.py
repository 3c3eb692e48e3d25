"""Sparse retrieval: BM25 (bm25s), the index persisted in the artefact cache and reused."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import bm25s

from ragft.config.values import NonNegativeFloat, Probability
from ragft.record.cache import build_seconds, cached_dir, content_key, dir_bytes
from ragft.record.cost import RetrievalCost
from ragft.retrieval.base import require_corpus
from ragft.types import Example, Passage

BM25Variant = Literal["robertson", "lucene", "bm25l", "bm25+", "atire"]  # the scoring variants bm25s implements


class BM25Retriever:
    """Okapi BM25 over lower-cased word tokens (English stop words removed by default). Passages that
    share no term with the query score 0 and are not returned."""

    def __init__(
        self,
        k1: NonNegativeFloat = 1.5,
        b: Probability = 0.75,
        method: BM25Variant = "lucene",
        stopwords: str | None = "en",
    ) -> None:
        self.params = {"k1": k1, "b": b, "method": method}
        self.stopwords = stopwords
        self.index: bm25s.BM25 | None = None
        self.passages: list[Passage] = []

    def _tokens(self, texts: Sequence[str]) -> list[list[str]]:
        return bm25s.tokenize(list(texts), stopwords=self.stopwords, return_ids=False, show_progress=False)

    def build(self, passages: Sequence[Passage], train_examples: Sequence[Example] = ()) -> RetrievalCost:
        require_corpus(passages)
        start = time.perf_counter()
        texts = [p.text for p in passages]

        def index(out: Path) -> None:
            model = bm25s.BM25(**self.params)
            model.index(self._tokens(texts), show_progress=len(texts) > 10_000)
            model.save(str(out), show_progress=False)

        key = content_key("bm25", texts, self.params, self.stopwords)
        index_dir, built_now = cached_dir("indexes", key, index)
        self.index = bm25s.BM25.load(str(index_dir), show_progress=False)
        self.passages = list(passages)
        return RetrievalCost(
            corpus_passages=len(passages),
            index_build_s=time.perf_counter() - start,
            index_bytes=dir_bytes(index_dir),
            index_reused=not built_now,
            reindex_s=build_seconds(index_dir),
        )

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        if self.index is None:
            raise RuntimeError("BM25Retriever.search called before build")
        k = min(k, len(self.passages))
        ids, scores = self.index.retrieve(self._tokens(queries), k=k, show_progress=False, n_threads=1)
        return [[self.passages[i] for i, s in zip(row, row_scores) if s > 0] for row, row_scores in zip(ids, scores)]
