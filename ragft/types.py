"""The nouns every stage shares: examples, passages, contexts and predictions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Example:
    """One task example: an input, its reference output and what is known about it."""

    id: str
    input: str
    reference: str
    category: str = ""
    gold_passages: tuple[str, ...] = ()
    facts: dict[str, str] = field(default_factory=dict, hash=False)
    breakdowns: dict[str, str] = field(default_factory=dict, hash=False)  # e.g. knowledge: seen | unseen
    fields: dict[str, str] = field(default_factory=dict, hash=False)  # the record's fields a template names


@dataclass(frozen=True)
class Passage:
    """A retrievable text: a corpus document, or a chunk of one (then `source` names the document)."""

    id: str
    text: str
    source: str = ""

    @property
    def doc_id(self) -> str:
        return self.source or self.id


@dataclass(frozen=True)
class Context:
    """What a prompt carries besides the input: demonstration examples and retrieved passages."""

    shots: tuple[Example, ...] = ()
    passages: tuple[Passage, ...] = ()
    ranking: tuple[str, ...] | None = None  # documents the retriever ranked, best first; None: no retrieval


@dataclass(frozen=True)
class PreferencePair:
    """One preference for training: for a train example's prompt (built as the run builds it), the
    `chosen` response over the `rejected` one; `rejected_score` is its score on the task's primary metric
    where the pair came from a scored answer, and `origin` says where it came from ("<file>, line 3")."""

    example: Example
    chosen: str
    rejected: str
    rejected_score: float | None = None
    origin: str = ""


@dataclass
class TaskData:
    name: str
    splits: dict[str, list[Example]]
    corpus: list[Passage]
    places: dict[str, str] = field(default_factory=dict, compare=False)  # example id -> "<file>, line 5", for errors

    def split(self, name: str) -> list[Example]:
        return self.splits[name]


@dataclass
class Prediction:
    example: Example
    prompt: str
    output: str
    retrieved: tuple[str, ...] = ()  # documents of the passages in the prompt, in prompt order
    ranking: tuple[str, ...] | None = None  # the retriever's document ranking (None: the arm does not retrieve)
    passages: tuple[str, ...] = ()  # texts of the retrieved passages (they are in the prompt, not re-written)
    prompt_tokens: int = 0
    output_tokens: int = 0
    scores: dict[str, float] = field(default_factory=dict)
    padded_prompt_tokens: int = 0  # the prompt's row in its generation batch, padding included (not written)

    def record(self) -> dict[str, Any]:
        """The row written to predictions.jsonl."""
        return {
            "id": self.example.id,
            "category": self.example.category,
            "breakdowns": self.example.breakdowns,
            "input": self.example.input,
            "prompt": self.prompt,
            "retrieved": list(self.retrieved),
            "ranking": None if self.ranking is None else list(self.ranking),
            "gold_passages": list(self.example.gold_passages),
            "output": self.output,
            "reference": self.example.reference,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "scores": self.scores,
        }
