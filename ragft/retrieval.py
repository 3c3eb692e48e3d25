"""Dense retrieval: embed the corpus once (cached), search a FAISS index, and put passages in prompts."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import faiss
import numpy as np

from ragft.cache import cached_dir, content_key
from ragft.errors import ConfigError
from ragft.prompting import Resources
from ragft.types import Context, Example, Passage

log = logging.getLogger(__name__)


def embed_texts(embedder: Any, texts: Sequence[str], batch_size: int = 64, cache: bool = True) -> np.ndarray:
    """L2-normalised float32 embeddings, cached on disk under a hash of the embedder and the texts."""

    def encode() -> np.ndarray:
        vectors = embedder.encode(
            list(texts),
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=len(texts) > 256,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    if not cache:
        return encode()
    key = content_key("embeddings", getattr(embedder, "ragft_path", repr(embedder)), list(texts))
    path, _ = cached_dir("embeddings", key, lambda out: np.save(out / "vectors.npy", encode()))
    return np.load(path / "vectors.npy")


class DenseRetriever:
    """Any sentence-transformers embedder over a FAISS index built with `index_factory` (inner product)."""

    def __init__(
        self,
        name: str = "dense",
        index: str = "Flat",
        search_params: dict[str, float] | None = None,
    ) -> None:
        self.name = name
        self.index_spec = index
        self.search_params = dict(search_params or {})
        self.index: faiss.Index | None = None
        self.passages: list[Passage] = []
        self.stats: dict[str, float] = {}

    def build(self, passages: Sequence[Passage], resources: Resources) -> None:
        if not passages:
            raise ConfigError(
                "task.corpus",
                "retrieval needs a corpus, but the task has none.",
                "Set task.corpus.path to a JSONL file of passages.",
            )
        start = time.perf_counter()
        vectors = resources.embed([p.text for p in passages])
        embedded = time.perf_counter()
        try:
            index = faiss.index_factory(vectors.shape[1], self.index_spec, faiss.METRIC_INNER_PRODUCT)
            if not index.is_trained:
                index.train(vectors)
        except RuntimeError as err:
            raise ConfigError(
                "retriever.index",
                f"FAISS cannot build '{self.index_spec}' over "
                f"{len(passages)} passages: {str(err).strip().splitlines()[-1]}",
            ) from None
        index.add(vectors)
        for param, value in self.search_params.items():  # e.g. nprobe for IVF, efSearch for HNSW
            try:
                faiss.ParameterSpace().set_index_parameter(index, param, value)
            except RuntimeError as err:
                raise ConfigError(
                    f"retriever.search_params.{param}", f"not valid for '{self.index_spec}': {err}"
                ) from None
        self.index, self.passages = index, list(passages)
        self.stats = {
            "embed_corpus_s": embedded - start,
            "index_build_s": time.perf_counter() - embedded,
            "index_bytes": int(faiss.serialize_index(index).nbytes),
            "corpus_passages": len(passages),
        }

    def search(self, queries: Sequence[str], k: int, resources: Resources) -> list[list[Passage]]:
        if self.index is None:
            raise RuntimeError("DenseRetriever.search called before build")
        k = min(k, len(self.passages))
        _, ids = self.index.search(resources.embed(queries), k)
        return [[self.passages[i] for i in row if i >= 0] for row in ids]


class RagContext:
    """Top-k passages from the configured retriever, placed in the prompt."""

    def __init__(self, top_k: int = 2) -> None:
        if top_k < 1:
            raise ConfigError("context.builder.top_k", f"must be at least 1, got {top_k}.")
        self.top_k = top_k

    def build(self, examples: Sequence[Example], resources: Resources, exclude_self: bool = False) -> list[Context]:
        hits = resources.retriever().search([e.input for e in examples], self.top_k, resources)
        return [Context(passages=tuple(row)) for row in hits]
