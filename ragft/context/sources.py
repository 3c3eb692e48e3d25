"""Lazily built shared resources of a run: the embedder, the (chunked) corpus, the retriever's index
and a fine-tuned retrieval embedder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ragft.errors import build
from ragft.models.loading import load_embedder
from ragft.retrieval import embed_texts
from ragft.types import Example, Passage, TaskData


def build_retriever(cfg: DictConfig) -> Any:
    """The `retriever` config's retriever (its `label` only names arms, so the class does not get it)."""
    settings = OmegaConf.to_container(cfg, resolve=True)  # (a value still `???` stays missing)
    settings.pop("label", None)
    return build(OmegaConf.create(settings), "retriever")


class RunResources:
    """What context builders draw on; nothing is loaded until a builder asks for it."""

    def __init__(
        self,
        task: TaskData,
        embedder_cfg: DictConfig,
        retriever_cfg: DictConfig,
        chunking_cfg: DictConfig | None = None,
    ) -> None:
        self.task = task
        self.embedder_cfg = embedder_cfg
        self.retriever_cfg = retriever_cfg
        self.chunking_cfg = chunking_cfg
        self._retriever: Any = None
        self._passages: list[Passage] | None = None

    @property
    def train_pool(self) -> list[Example]:
        return self.task.split("train")

    @cached_property
    def embedder(self) -> Any:
        return load_embedder(self.embedder_cfg)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return embed_texts(self.embedder, texts, batch_size=self.embedder_cfg.batch_size)

    def passages(self) -> list[Passage]:
        """The task's corpus as indexed: split by the `chunking` config where one is set."""
        if self._passages is None:
            chunker = build(self.chunking_cfg, "chunking") if self.chunking_cfg else None
            self._passages = chunker.split(self.task.corpus, self) if chunker else list(self.task.corpus)
        return self._passages

    def finetuned_embedder(self, settings: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        """The run's embedder fine-tuned on the train split's query -> gold passage pairs (cached)."""
        from ragft.retrieval.finetune import finetune_embedder

        folder, stats = finetune_embedder(self.embedder, self.train_pool, self.passages(), settings)
        model = load_embedder(DictConfig({**self.embedder_cfg, "source": folder}))
        return model, stats

    def retriever(self) -> Any:
        if self._retriever is None:
            retriever = build_retriever(self.retriever_cfg)
            retriever.build(self.passages(), self)
            self._retriever = retriever
        return self._retriever

    def stats(self) -> dict[str, float]:
        return dict(self._retriever.stats) if self._retriever is not None else {}
