"""Context builders without retrieval: nothing (zero-shot), or k demonstration examples from the
train split chosen at random or by embedding similarity (few-shot)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from ragft.errors import ConfigError
from ragft.types import Context, Example, Passage


class Resources(Protocol):
    """What context builders may draw on; built lazily by the run."""

    @property
    def train_pool(self) -> list[Example]: ...
    def embed(self, texts: Sequence[str]) -> np.ndarray: ...
    def passages(self) -> list[Passage]: ...
    def retriever(self) -> Any: ...


class ContextBuilder(Protocol):
    def build(self, examples: Sequence[Example], resources: Resources, exclude_self: bool = False) -> list[Context]:
        """One context per example; `exclude_self` keeps an example out of its own context (training)."""


class ZeroShot:
    def build(self, examples: Sequence[Example], resources: Resources, exclude_self: bool = False) -> list[Context]:
        return [Context() for _ in examples]


class RandomShots:
    """Pick demonstrations uniformly at random (seeded) from the train split."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def select(
        self, examples: Sequence[Example], pool: Sequence[Example], k: int, resources: Resources, exclude_self: bool
    ) -> list[list[int]]:
        rng = random.Random(self.seed)
        chosen = []
        for example in examples:
            candidates = [i for i, p in enumerate(pool) if not (exclude_self and p.id == example.id)]
            chosen.append(rng.sample(candidates, k))
        return chosen


class SimilarShots:
    """Pick the train examples whose inputs are nearest to the query input in embedding space."""

    def select(
        self, examples: Sequence[Example], pool: Sequence[Example], k: int, resources: Resources, exclude_self: bool
    ) -> list[list[int]]:
        pool_vectors = resources.embed([p.input for p in pool])
        query_vectors = resources.embed([e.input for e in examples])
        similarity = query_vectors @ pool_vectors.T
        chosen = []
        for row, example in zip(similarity, examples):
            order = [
                int(i) for i in np.argsort(-row, kind="stable") if not (exclude_self and pool[int(i)].id == example.id)
            ]
            chosen.append(order[:k])
        return chosen


class FewShot:
    """k demonstration examples from the train split, chosen by `selection`."""

    def __init__(self, k: int, selection: RandomShots | SimilarShots) -> None:
        if k < 1:
            raise ConfigError("context.builder.k", f"must be at least 1, got {k}.")
        self.k = k
        self.selection = selection

    def build(self, examples: Sequence[Example], resources: Resources, exclude_self: bool = False) -> list[Context]:
        pool = resources.train_pool
        if self.k > len(pool) - int(exclude_self):
            raise ConfigError(
                "context.builder.k",
                f"asks for {self.k} examples but the train split has {len(pool)}.",
                "Lower k or raise task.limits.train.",
            )
        picks = self.selection.select(examples, pool, self.k, resources, exclude_self)
        return [Context(shots=tuple(pool[i] for i in row)) for row in picks]
