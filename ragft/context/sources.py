"""What context builders draw on: the task's train pool, its corpus as indexed (chunked where
configured) and the retriever over that corpus, built on first use."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from ragft.config.components import RAGFT_KEYS
from ragft.config.plain import as_dict
from ragft.errors import ConfigError, build
from ragft.record.cost import RetrievalCost
from ragft.retrieval.base import Retriever
from ragft.retrieval.chunking import Chunker
from ragft.types import Example, Passage, TaskData


def build_retriever(cfg: DictConfig | None) -> Retriever | None:
    """The `retriever` config's retriever, not yet built over a corpus (None for `retriever: null`).
    Its `label` only names arms, so the class does not get it."""
    if cfg is None:
        return None
    settings = as_dict(cfg)  # (a value still `???` stays missing)
    for key in RAGFT_KEYS["retriever"]:
        settings.pop(key, None)
    node = OmegaConf.create({"retriever": settings}).retriever  # so that errors name `retriever.<key>`
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
        """The task's corpus as indexed: split by the chunker where one is set."""
        if self._passages is None:
            corpus = list(self.task.corpus)
            self._passages = self._chunker.split(corpus) if self._chunker is not None else corpus
        return self._passages

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
        """What building the retriever cost; None where it was not built (the context retrieves nothing)."""
        return self._cost
