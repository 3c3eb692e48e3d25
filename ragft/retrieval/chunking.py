"""Splitting corpus documents into the passages that are indexed: by tokens with overlap, or by section.

A chunk's id is `<document id>#<n>` and its `source` is the document, so retrieval metrics judge
documents (gold passages name documents) while the prompt carries only the chunk. A document that
fits in one chunk is kept as it is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

from ragft.config.values import NonNegativeInt, PositiveInt
from ragft.errors import ConfigError
from ragft.retrieval.embeddings import Embedder
from ragft.types import Passage


class Chunker(Protocol):
    def split(self, documents: Sequence[Passage]) -> list[Passage]:
        """The passages to index, in document order."""


def _as_chunks(document: Passage, texts: Sequence[str]) -> list[Passage]:
    texts = [t.strip() for t in texts if t.strip()]
    if len(texts) <= 1:
        return [document]
    return [Passage(f"{document.id}#{n}", text, source=document.doc_id) for n, text in enumerate(texts)]


class TokenChunker:
    """Windows of `size` tokens of `embedder`'s tokenizer (the run's), each overlapping the previous by
    `overlap`, so that a chunk fits what the embedder reads."""

    def __init__(self, embedder: Embedder, size: PositiveInt = 128, overlap: NonNegativeInt = 32) -> None:
        if overlap >= size:
            raise ConfigError(
                "chunking.overlap", f"{overlap} is not below chunking.size ({size}).", "Set it to less than the size."
            )
        self.embedder = embedder
        self.size, self.overlap = size, overlap

    def split(self, documents: Sequence[Passage]) -> list[Passage]:
        if self.size > self.embedder.window:
            raise ConfigError(
                "chunking.size",
                f"{self.size} tokens is more than {self.embedder.name or 'the embedder'} reads ({self.embedder.window}): "
                "the rest of each chunk would be in prompts without having been ranked.",
                f"Set it to {self.embedder.window} or less.",
            )
        tokenizer = self.embedder.tokenizer
        chunks = []
        for document in documents:
            offsets = tokenizer(document.text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)[
                "offset_mapping"
            ]
            starts = range(0, max(len(offsets) - self.overlap, 1), self.size - self.overlap)
            windows = [offsets[s : s + self.size] for s in starts]
            chunks += _as_chunks(document, [self._fitting(document.text, w) for w in windows if w])
        return chunks

    def _fitting(self, text: str, window: Sequence[tuple[int, int]]) -> str:
        """The text of a window of token offsets, shortened by a token at a time where, read on its own, it
        comes to more than `size` tokens (a chunk that begins inside a word splits it differently)."""
        end = len(window)
        while True:
            chunk = text[window[0][0] : window[end - 1][1]]
            if end == 1 or len(self.embedder.tokenizer(chunk, add_special_tokens=False)["input_ids"]) <= self.size:
                return chunk
            end -= 1


class SectionChunker:
    """Split where `pattern` (a regular expression) matches: by default at blank lines; for Markdown
    headings use `(?m)^(?=#)` (a zero-width match keeps the heading with its section)."""

    def __init__(self, pattern: str = r"\n\s*\n") -> None:
        try:
            self.pattern = re.compile(pattern)
        except re.error as err:
            raise ConfigError("chunking.pattern", f"is not a regular expression: {err}.") from None

    def split(self, documents: Sequence[Passage]) -> list[Passage]:
        return [chunk for document in documents for chunk in _as_chunks(document, self.pattern.split(document.text))]
