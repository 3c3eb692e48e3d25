"""Dense retrieval: a sentence-transformers embedder over a FAISS index (any `index_factory` string),
the index persisted in the artefact cache and reused."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import faiss
import numpy as np

from ragft.errors import ConfigError
from ragft.record.cache import build_seconds, cached_dir, content_key, dir_bytes
from ragft.record.cost import RetrievalCost, cold_total
from ragft.retrieval.base import require_corpus, with_training
from ragft.retrieval.embeddings import Embedder
from ragft.retrieval.finetune import EmbedderFinetune
from ragft.types import Example, Passage

log = logging.getLogger(__name__)


class DenseRetriever:
    """Inner-product search over L2-normalised embeddings of `embedder`. With `finetune`, the embedder
    is first trained on the task's query -> gold passage pairs, and that model is used."""

    def __init__(
        self,
        embedder: Embedder,
        index: str = "Flat",
        search_params: Mapping[str, float] | None = None,
        finetune: EmbedderFinetune | None = None,
    ) -> None:
        self.embedder = embedder
        self.index_spec = index
        self.search_params = dict(search_params or {})
        self.finetune = finetune
        self.index: faiss.Index | None = None
        self.passages: list[Passage] = []
        self._serving = embedder  # the embedder that indexed the corpus (fine-tuned where configured)

    def reading_embedder(self) -> Embedder:
        """The embedder whose window each passage is read through (a fine-tuned copy keeps it)."""
        return self.embedder

    def build(self, passages: Sequence[Passage], train_examples: Sequence[Example] = ()) -> RetrievalCost:
        require_corpus(passages)
        training = None
        self._serving = self.embedder
        if self.finetune is not None:
            self._serving, training = self.finetune.train(self.embedder, train_examples, passages)
        texts = [p.text for p in passages]
        start = time.perf_counter()  # the embedder is loaded (and fine-tuned): from here on, indexing cost
        vectors, embed_cold_s = self._serving.embed_timed(texts)
        embedded = time.perf_counter()
        key = content_key("faiss", self._serving.path, texts, self.index_spec)
        index_dir, built_now = cached_dir("indexes", key, lambda out: self._build_index(vectors, len(passages), out))
        index = faiss.read_index(str(index_dir / "index.faiss"))
        self._set_search_params(index)
        self.index, self.passages = index, list(passages)
        cost = RetrievalCost(
            corpus_passages=len(passages),
            embed_corpus_s=embedded - start,
            index_build_s=time.perf_counter() - embedded,
            index_bytes=dir_bytes(index_dir),
            index_reused=not built_now,
            reindex_s=cold_total(embed_cold_s, build_seconds(index_dir)),
        )
        return with_training(cost, training)

    def _build_index(self, vectors: np.ndarray, n_passages: int, out: Path) -> None:
        try:
            index = faiss.index_factory(vectors.shape[1], self.index_spec, faiss.METRIC_INNER_PRODUCT)
            if not index.is_trained:
                index.train(np.ascontiguousarray(vectors))
        except RuntimeError as err:
            raise ConfigError(
                "retriever.index",
                f"FAISS cannot build '{self.index_spec}' over {n_passages} passages: "
                f"{str(err).strip().splitlines()[-1]}",
                "Clustering indexes (IVF, PQ) need many more passages than clusters or codes; use Flat or HNSW32 "
                "for a small corpus.",
            ) from None
        index.add(np.ascontiguousarray(vectors))
        faiss.write_index(index, str(out / "index.faiss"))

    def _set_search_params(self, index: faiss.Index) -> None:
        for param, value in self.search_params.items():  # e.g. nprobe for IVF, efSearch for HNSW
            try:
                faiss.ParameterSpace().set_index_parameter(index, param, value)
            except RuntimeError as err:
                raise ConfigError(
                    f"retriever.search_params.{param}", f"not valid for '{self.index_spec}': {err}"
                ) from None

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        if self.index is None:
            raise RuntimeError("DenseRetriever.search called before build")
        k = min(k, len(self.passages))
        query_vectors = self._serving.embed(queries, cache=False)  # a query is embedded when it is asked
        _, ids = self.index.search(np.ascontiguousarray(query_vectors), k)
        return [[self.passages[i] for i in row if i >= 0] for row in ids]
