"""Context builders without retrieval: nothing (zero-shot), or k demonstration examples from the
train split chosen at random or by embedding similarity (few-shot)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ragft.config.values import NonNegativeInt, PositiveInt
from ragft.context.sources import ContextSources
from ragft.errors import ConfigError
from ragft.types import Context, Example


class ContextBuilder(Protocol):
    def check(self, sources: ContextSources) -> None:
        """Fail before any work where `sources` cannot give this context (no retriever, too few examples)."""

    def build(self, examples: Sequence[Example], sources: ContextSources, exclude_self: bool = False) -> list[Context]:
        """One context per example; `exclude_self` keeps an example out of its own context (training)."""


class TextEmbedder(Protocol):
    def embed(self, texts: Sequence[str], cache: bool = True) -> np.ndarray: ...


class ZeroShot:
    def check(self, sources: ContextSources) -> None:
        pass

    def build(self, examples: Sequence[Example], sources: ContextSources, exclude_self: bool = False) -> list[Context]:
        return [Context() for _ in examples]


class RandomShots:
    """Pick demonstrations uniformly at random (seeded) from the train split."""

    def __init__(self, seed: NonNegativeInt) -> None:
        self.seed = seed

    def select(
        self, examples: Sequence[Example], pool: Sequence[Example], k: int, exclude_self: bool
    ) -> list[list[int]]:
        rng = random.Random(self.seed)
        chosen = []
        for example in examples:
            candidates = [i for i, p in enumerate(pool) if not (exclude_self and p.id == example.id)]
            chosen.append(rng.sample(candidates, k))
        return chosen


class SimilarShots:
    """Pick the train examples whose inputs are nearest to the query input in `embedder`'s space."""

    def __init__(self, embedder: TextEmbedder) -> None:
        self.embedder = embedder

    def select(
        self, examples: Sequence[Example], pool: Sequence[Example], k: int, exclude_self: bool
    ) -> list[list[int]]:
        pool_vectors = self.embedder.embed([p.input for p in pool])
        query_vectors = self.embedder.embed([e.input for e in examples])
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

    def __init__(self, k: PositiveInt, selection: RandomShots | SimilarShots) -> None:
        self.k = k
        self.selection = selection

    def check(self, sources: ContextSources, exclude_self: bool = False) -> None:
        pool = sources.train_pool
        if self.k > len(pool) - int(exclude_self):
            raise ConfigError(
                "context.builder.k",
                f"asks for {self.k} examples but the train split has {len(pool)}.",
                "Lower k or raise task.limits.train.",
            )

    def build(self, examples: Sequence[Example], sources: ContextSources, exclude_self: bool = False) -> list[Context]:
        self.check(sources, exclude_self)
        pool = sources.train_pool
        picks = self.selection.select(examples, pool, self.k, exclude_self)
        return [Context(shots=tuple(pool[i] for i in row)) for row in picks]
