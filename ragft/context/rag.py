"""Context builders that put corpus passages in the prompt: plain RAG, RAFT-style training contexts
(gold passage with probability p, plus distractors), and the oracle (the gold passages: retrieval's
upper bound)."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Literal

from ragft.config.values import NonNegativeInt, PositiveInt, Probability
from ragft.context.sources import ContextSources
from ragft.errors import ConfigError
from ragft.retrieval.base import document_ranking
from ragft.types import Context, Example, Passage

log = logging.getLogger(__name__)


class RagContext:
    """Top-k passages from the configured retriever, placed in the prompt. The retriever ranks `depth`
    passages so that MRR and nDCG can be measured beyond what the prompt shows."""

    def __init__(self, top_k: PositiveInt = 2, depth: PositiveInt = 10) -> None:
        self.top_k = top_k
        self.depth = max(depth, top_k)

    def check(self, sources: ContextSources) -> None:
        sources.require_retriever()

    def ranked(self, examples: Sequence[Example], sources: ContextSources) -> list[list[Passage]]:
        """The retriever's best passages per example, best first, deep enough to cover `depth` distinct
        documents where the corpus has them (several chunks of one document count once)."""
        retriever, queries = sources.retriever(), [e.input for e in examples]
        n_passages = len(sources.passages())
        k = self.depth
        while True:
            rows = retriever.search(queries, k)
            if k >= n_passages or all(len(document_ranking(row)) >= self.depth for row in rows):
                return rows
            k = min(2 * k, n_passages)

    def build(self, examples: Sequence[Example], sources: ContextSources, exclude_self: bool = False) -> list[Context]:
        return [
            Context(passages=tuple(row[: self.top_k]), ranking=document_ranking(row)[: self.depth])
            for row in self.ranked(examples, sources)
        ]


class RaftContext(RagContext):
    """RAFT (Zhang et al. 2024). At inference, the retriever's top-k like RagContext. For training, each
    prompt carries the example's gold passage with probability `p_gold` plus `distractors` other
    passages — the highest-ranked passages outside the gold document (`distractor_source: retrieved`) or
    random ones (`random`) — in shuffled order, so the model learns to use relevant context and to
    ignore the rest. A chunked gold document contributes its first chunk. Training examples without a
    gold passage in the corpus get the plain retrieved context (they cannot be told what to ignore)."""

    def __init__(
        self, top_k: PositiveInt = 1, depth: PositiveInt = 10, p_gold: Probability = 0.8,
        distractors: NonNegativeInt = 1, distractor_source: Literal["retrieved", "random"] = "retrieved",
        seed: NonNegativeInt = 0,
    ) -> None:  # fmt: skip
        super().__init__(top_k, depth)
        sources = {"retrieved": self._retrieved_distractors, "random": self._random_distractors}
        self.p_gold, self.distractors, self.seed = p_gold, distractors, seed
        self.pick_distractors = sources[distractor_source]

    def build(self, examples: Sequence[Example], sources: ContextSources, exclude_self: bool = False) -> list[Context]:
        if not exclude_self:  # inference: what the retriever finds
            return super().build(examples, sources)
        return self.training_contexts(examples, sources)

    def training_contexts(self, examples: Sequence[Example], sources: ContextSources) -> list[Context]:
        corpus = sources.passages()
        first_chunk: dict[str, Passage] = {}
        for passage in corpus:
            first_chunk.setdefault(passage.doc_id, passage)
        with_gold = [e for e in examples if any(d in first_chunk for d in e.gold_passages)]
        if not with_gold:
            raise ConfigError(
                "context", "RAFT training needs gold passages in the corpus, and no train example has one.",
                "Map the task's gold passage ids with task.data.fields.gold_passages, or use context=rag.",
            )  # fmt: skip
        if len(with_gold) < len(examples):
            log.warning("RAFT: %d of %d train examples have no gold passage; they get the plain retrieved context",
                        len(examples) - len(with_gold), len(examples))  # fmt: skip
        ranked = dict(zip((e.id for e in examples), self.ranked(examples, sources)))  # one retrieval for all
        rng = random.Random(self.seed)
        distractors = {e.id: self.pick_distractors(e, ranked[e.id], corpus, rng) for e in with_gold}
        contexts = []
        for example in examples:
            if example.id not in distractors:
                contexts.append(Context(passages=tuple(ranked[example.id][: self.top_k])))
                continue
            gold = (
                [first_chunk[d] for d in example.gold_passages if d in first_chunk]
                if rng.random() < self.p_gold
                else []
            )
            chosen = gold + distractors[example.id]
            rng.shuffle(chosen)
            contexts.append(Context(passages=tuple(chosen)))
        return contexts

    def _retrieved_distractors(
        self, example: Example, ranked: Sequence[Passage], corpus: Sequence[Passage], rng: random.Random
    ) -> list[Passage]:
        return [p for p in ranked if p.doc_id not in example.gold_passages][: self.distractors]

    def _random_distractors(
        self, example: Example, ranked: Sequence[Passage], corpus: Sequence[Passage], rng: random.Random
    ) -> list[Passage]:
        pool = [p for p in corpus if p.doc_id not in example.gold_passages]
        return rng.sample(pool, k=min(self.distractors, len(pool)))


class OracleContext:
    """Retrieval's ceiling: every example's gold passages (each chunk of each gold document, in corpus
    order) in the prompt, as a perfect retriever would place them. An arm with this context shows what
    the generator makes of the right passage, so the gap between it and `rag` is what retrieval loses.
    Nothing is retrieved (no ranking is scored); an example without a gold passage in the corpus gets none."""

    def check(self, sources: ContextSources) -> None:
        if not sources.passages():
            raise ConfigError(
                "context", "the oracle context places gold passages from the task's corpus, and the task has none.",
                "Give the task a corpus (task.corpus) and gold passage ids (task.data.fields.gold_passages).",
            )  # fmt: skip

    def build(self, examples: Sequence[Example], sources: ContextSources, exclude_self: bool = False) -> list[Context]:
        by_document: dict[str, list[Passage]] = {}
        for passage in sources.passages():
            by_document.setdefault(passage.doc_id, []).append(passage)
        contexts = [
            Context(passages=tuple(p for doc in e.gold_passages for p in by_document.get(doc, []))) for e in examples
        ]
        without = sum(not c.passages for c in contexts)
        if without == len(examples):
            raise ConfigError(
                "context", "no example has a gold passage in the corpus, so the oracle context would be empty.",
                "Map the task's gold passage ids with task.data.fields.gold_passages.",
            )  # fmt: skip
        if without:
            log.warning("oracle context: %d of %d examples have no gold passage in the corpus", without, len(examples))
        return contexts
