"""Lazily built shared resources of a run: the embedder and the retriever's index."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from ragft.models import load_embedder
from ragft.retrieval import embed_texts
from ragft.types import Example, TaskData


class RunResources:
    """What context builders draw on; nothing is loaded until a builder asks for it."""

    def __init__(self, task: TaskData, embedder_cfg: DictConfig, retriever_cfg: DictConfig) -> None:
        self.task = task
        self.embedder_cfg = embedder_cfg
        self.retriever_cfg = retriever_cfg
        self._retriever: Any = None

    @property
    def train_pool(self) -> list[Example]:
        return self.task.split("train")

    @cached_property
    def embedder(self) -> Any:
        return load_embedder(self.embedder_cfg)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return embed_texts(self.embedder, texts, batch_size=self.embedder_cfg.batch_size)

    def retriever(self) -> Any:
        if self._retriever is None:
            retriever = instantiate(self.retriever_cfg)
            retriever.build(self.task.corpus, self)
            self._retriever = retriever
        return self._retriever

    def stats(self) -> dict[str, float]:
        return dict(self._retriever.stats) if self._retriever is not None else {}
