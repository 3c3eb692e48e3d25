"""The majority floor: a fixed answer counted from the training split, served in place of the model.

An arm that scores no better than this has learnt nothing a tally of the training references would not
give. For structured references (`HEADER: value` lines, e.g. the clinic's reports) the answer holds the
most frequent value of each line, in the most frequent order of lines; for free text it is the most
frequent training reference.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import GenerationConfig

from ragft.errors import ConfigError
from ragft.eval.text import report_sections
from ragft.models.loading import Generator
from ragft.types import Example

MIN_SECTIONS = 2  # a reference with fewer `HEADER: value` lines is free text


def majority_answer(references: Sequence[str]) -> str:
    """The most frequent value of each line of structured references, or the most frequent reference."""
    if not references:
        raise ConfigError("task.data", "the majority answer is counted from the train split, which is empty.")
    parsed = [report_sections(r) for r in references]
    if not all(len(sections) >= MIN_SECTIONS for sections in parsed):
        return _most_common(references)
    order = _most_common([tuple(sections) for sections in parsed])
    return "\n".join(f"{h}: {_most_common([s[h] for s in parsed if h in s])}" for h in order)


def _most_common(values: Sequence[Any]) -> Any:
    """The most frequent value; ties go to the one seen first, so the answer does not depend on hashing."""
    return Counter(values).most_common(1)[0][0]


class FixedAnswer(torch.nn.Module):
    """Not a language model: `generate` returns the same tokens after every prompt. It has no parameters
    (an empty one marks its device), so a run records 0 parameters for it."""

    def __init__(self, token_ids: Sequence[int], eos_token_id: int) -> None:
        super().__init__()
        self.register_buffer("answer", torch.tensor([*token_ids, eos_token_id], dtype=torch.long), persistent=False)
        self.anchor = torch.nn.Parameter(torch.zeros(0), requires_grad=False)
        self.generation_config = GenerationConfig(eos_token_id=eos_token_id)

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, **_: Any) -> torch.Tensor:
        """Each prompt followed by the answer (cut at `max_new_tokens`), as transformers' generate returns it."""
        answer = self.get_buffer("answer")[:max_new_tokens].to(input_ids.device)
        return torch.cat([input_ids, answer.expand(input_ids.shape[0], -1)], dim=1)


class MajorityAnswer:
    """`adaptation=majority`: the configured generator's tokenizer renders and counts the prompts, and
    the fixed majority answer of the train split replaces its model."""

    def serve(self, load_base: Callable[[], Generator], train: Sequence[Example]) -> Generator:
        generator = load_base()
        text = majority_answer([e.reference for e in train])
        tokens = generator.tokenizer(text, add_special_tokens=False)["input_ids"]
        generator.model = FixedAnswer(tokens, generator.tokenizer.eos_token_id)
        return generator


def fixed_answer_loader(
    answerer: MajorityAnswer, load_base: Callable[[], Generator], train: Sequence[Example]
) -> Callable[[], Generator]:
    """A loader like the run's base-model loader that serves `answerer`'s fixed answer instead."""
    return lambda: answerer.serve(load_base, train)
