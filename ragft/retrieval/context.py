"""Context builders that put retrieved passages in the prompt: plain RAG, and RAFT-style training
contexts (gold passage with probability p, plus distractors)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from ragft.errors import ConfigError
from ragft.retrieval.base import document_ranking
from ragft.types import Context, Example, Passage


class RagContext:
    """Top-k passages from the configured retriever, placed in the prompt. The retriever ranks `depth`
    passages so that MRR and nDCG can be measured beyond what the prompt shows."""

    def __init__(self, top_k: int = 2, depth: int = 10) -> None:
        if top_k < 1:
            raise ConfigError("context.builder.top_k", f"must be at least 1, got {top_k}.")
        self.top_k = top_k
        self.depth = max(depth, top_k)

    def ranked(self, examples: Sequence[Example], resources: Any) -> list[list[Passage]]:
        """The retriever's `depth` best passages per example, best first."""
        return resources.retriever().search([e.input for e in examples], self.depth, resources)

    def build(self, examples: Sequence[Example], resources: Any, exclude_self: bool = False) -> list[Context]:
        return [
            Context(passages=tuple(row[: self.top_k]), ranking=document_ranking(row))
            for row in self.ranked(examples, resources)
        ]


class RaftContext(RagContext):
    """RAFT (Zhang et al. 2024). At inference, the retriever's top-k like RagContext. For training, each
    prompt carries the example's gold passage with probability `p_gold` plus `distractors` other
    passages — the highest-ranked non-gold ones (`distractor_source: retrieved`) or random ones from the
    corpus (`random`) — in shuffled order, so the model learns to use relevant context and to ignore
    the rest."""

    def __init__(
        self, top_k: int = 1, depth: int = 10, p_gold: float = 0.8, distractors: int = 1,
        distractor_source: str = "retrieved", seed: int = 0,
    ) -> None:  # fmt: skip
        super().__init__(top_k, depth)
        if not 0.0 <= p_gold <= 1.0:
            raise ConfigError("context.builder.p_gold", f"must be a probability, got {p_gold}.")
        if distractors < 0:
            raise ConfigError("context.builder.distractors", f"must be 0 or more, got {distractors}.")
        if distractor_source not in ("retrieved", "random"):
            raise ConfigError(
                "context.builder.distractor_source", f"is 'retrieved' or 'random', got {distractor_source!r}."
            )
        self.p_gold, self.distractors, self.distractor_source, self.seed = p_gold, distractors, distractor_source, seed

    def build(self, examples: Sequence[Example], resources: Any, exclude_self: bool = False) -> list[Context]:
        if not exclude_self:  # inference: what the retriever finds
            return super().build(examples, resources)
        return self.training_contexts(examples, resources.passages(), resources)

    def training_contexts(
        self, examples: Sequence[Example], corpus: Sequence[Passage], resources: Any
    ) -> list[Context]:
        if not any(e.gold_passages for e in examples):
            raise ConfigError(
                "context", "RAFT training needs gold passages, and the train split has none.",
                "Map the task's gold passage ids with task.data.fields.gold_passages, or use context=rag.",
            )  # fmt: skip
        rng = random.Random(self.seed)
        by_doc: dict[str, list[Passage]] = {}
        for passage in corpus:
            by_doc.setdefault(passage.doc_id, []).append(passage)
        ranked = self.ranked(examples, resources) if self.distractor_source == "retrieved" else None
        contexts = []
        for n, example in enumerate(examples):
            gold_docs = set(example.gold_passages)
            gold = [by_doc[d][0] for d in example.gold_passages if d in by_doc] if rng.random() < self.p_gold else []
            if ranked is not None:
                distractors = [p for p in ranked[n] if p.doc_id not in gold_docs][: self.distractors]
            else:
                pool = [p for p in corpus if p.doc_id not in gold_docs]
                distractors = rng.sample(pool, k=min(self.distractors, len(pool)))
            chosen = gold + distractors
            rng.shuffle(chosen)
            contexts.append(Context(passages=tuple(chosen)))
        return contexts
