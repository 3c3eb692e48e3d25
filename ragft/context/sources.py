"""What context builders draw on: the task's train pool, its corpus as indexed (chunked where
configured) and the retriever over that corpus, built on first use."""

from __future__ import annotations

import logging
from dataclasses import replace

from omegaconf import DictConfig, OmegaConf

from ragft.config.components import buildable
from ragft.data.text import token_counts
from ragft.errors import ConfigError, build
from ragft.record.cost import RetrievalCost
from ragft.retrieval.base import Retriever, reading_embedder
from ragft.retrieval.chunking import Chunker, TokenChunker
from ragft.retrieval.embeddings import Embedder
from ragft.types import Example, Passage, TaskData

log = logging.getLogger(__name__)


def build_retriever(cfg: DictConfig | None) -> Retriever | None:
    """The `retriever` config's retriever, not yet built over a corpus (None for `retriever: null`).
    Its `label` only names arms, so the class does not get it."""
    if cfg is None:
        return None
    node = buildable(cfg, "retriever")
    if missing := sorted(OmegaConf.missing_keys(node)):  # (keys come with their full path)
        raise ConfigError(missing[0], "must be set (it has no default).")
    return build(node, "retriever")


class ContextSources:
    """The train pool, the (chunked) corpus and the retriever of one task. Nothing is loaded, split or
    indexed until a context builder asks for it."""

    def __init__(self, task: TaskData, retriever: Retriever | None = None, chunker: Chunker | None = None) -> None:
        self.task = task
        self._retriever = retriever
        self._chunker = chunker
        self._passages: list[Passage] | None = None
        self._cost: RetrievalCost | None = None
        self._window: tuple[int, int] | None = None  # (documents longer than the window, chunk size) where split

    @classmethod
    def from_config(
        cls, task: TaskData, retriever_cfg: DictConfig | None, chunking_cfg: DictConfig | None = None
    ) -> ContextSources:
        """Sources over `task` with the retriever and chunker of the `retriever` and `chunking` configs
        (either may be None); a fresh retriever each time, so each task indexes its own corpus."""
        chunker = build(chunking_cfg, "chunking") if chunking_cfg is not None else None
        return cls(task, build_retriever(retriever_cfg), chunker)

    @property
    def train_pool(self) -> list[Example]:
        """Where demonstrations and retriever training pairs come from: the task's train split."""
        return self.task.splits.get("train", [])

    def passages(self) -> list[Passage]:
        """The task's corpus as indexed: split by the chunker where one is set, else, where documents are
        longer than the retriever's embedder reads, into chunks of its window (`window_chunker`)."""
        if self._passages is None:
            corpus = list(self.task.corpus)
            chunker = self._chunker if self._chunker is not None else self._window_chunker(corpus)
            self._passages = chunker.split(corpus) if chunker is not None else corpus
        return self._passages

    def _window_chunker(self, corpus: list[Passage]) -> Chunker | None:
        """A TokenChunker at the window of the embedder that ranks passages, where some documents are
        longer than it reads; None where every document fits or nothing reads through a window (BM25).
        It is said in one line and recorded with the retrieval cost."""
        embedder = self.reading_embedder()
        if embedder is None or not corpus:
            return None
        window = embedder.window
        lengths = token_counts([p.text for p in corpus], embedder.tokenizer)
        over = sum(length > window for length in lengths)
        if not over:
            return None
        overlap = window // 4
        log.warning(
            "%d of %d corpus documents are longer than %s reads (%d tokens, longest %d): split into chunks of %d "
            "tokens overlapping by %d, so that a prompt carries what was ranked. Choose with chunking=tokens "
            "chunking.size=<n> or chunking=sections.",
            over, len(corpus), embedder.name or "the embedder", window, max(lengths), window, overlap,
        )  # fmt: skip
        self._window = (over, window)
        return TokenChunker(embedder, size=window, overlap=overlap)

    def reading_embedder(self) -> Embedder | None:
        """The embedder through whose window the retriever reads passages (None: none, or no retriever)."""
        return reading_embedder(self._retriever)

    @property
    def window_split(self) -> tuple[int, int] | None:
        """(documents longer than the embedder's window, the chunk size) where `passages` split the corpus
        to that window; None where it did not (or has not been asked)."""
        return self._window

    def require_retriever(self) -> Retriever:
        """The retriever, not yet built; a ConfigError where none is configured."""
        if self._retriever is None:
            raise ConfigError(
                "retriever",
                "the context retrieves passages, but no retriever is configured (retriever: null).",
                "Select one, e.g. `retriever=dense_flat`, or a context that does not retrieve "
                "(context=zero_shot or context=few_shot).",
            )
        return self._retriever

    def retriever(self) -> Retriever:
        """The retriever, built over the corpus (and trained on the train pool where configured) on first use."""
        retriever = self.require_retriever()
        if self._cost is None:
            self._cost = retriever.build(self.passages(), self.train_pool)
        return retriever

    def cost(self) -> RetrievalCost | None:
        """What building the retriever cost, with the corpus's split to the embedder's window where one
        was made; None where it was not built (the context retrieves nothing)."""
        if self._cost is None or self._window is None:
            return self._cost
        over, window = self._window
        return replace(self._cost, documents_over_window=over, chunked_to_window=window)
