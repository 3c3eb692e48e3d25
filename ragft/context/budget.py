"""The prompt budget: every prompt fits the generator's window with room for its answer.

A prompt over the budget (`context.builder.max_prompt_tokens`; by default the generator's window less
`task.generation.max_new_tokens`) loses its least similar demonstrations first, then its lowest-ranked
passages; the last passage left is trimmed to what fits rather than dropped. An input that does not fit
alone is an error naming the example, or, with `task.truncate`, cut to fit: `head` keeps its beginning,
`tail` its end, `middle` its beginning and end. What was dropped, trimmed and cut is counted in the run
record (`PromptFit`). Training prompts are fitted the same way, each to `training.max_length` less its
response (`ragft.adapt.features.fitted_features`)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from ragft.context.template import PromptTemplate
from ragft.errors import ConfigError, DataError
from ragft.record.cost import PromptFit
from ragft.types import Context, Example, Passage

log = logging.getLogger(__name__)

Truncation = Literal["head", "tail", "middle"]  # the part of an over-long input that is kept
ELLIPSIS = " … "  # where `middle` cut an input
TEST_BUDGET = "context.builder.max_prompt_tokens; by default the model's window less task.generation.max_new_tokens"


def prompt_budget(max_prompt_tokens: int | None, window: int, max_new_tokens: int) -> int:
    """The prompt tokens each example may use: `max_prompt_tokens` where set (within the window less the
    answer), else the window less the answer."""
    room = window - max_new_tokens
    if room <= 0:
        raise ConfigError(
            "task.generation.max_new_tokens",
            f"{max_new_tokens} new tokens leave no room for a prompt in the model's window of {window}.",
            "Lower it, or set generator.max_context for a model with a longer window.",
        )
    if max_prompt_tokens is not None and max_prompt_tokens > room:
        raise ConfigError(
            "context.builder.max_prompt_tokens",
            f"{max_prompt_tokens} prompt tokens and {max_new_tokens} new tokens (task.generation.max_new_tokens) "
            f"exceed the model's window of {window}.",
            f"Set it to {room} or less.",
        )
    return max_prompt_tokens or room


@dataclass(frozen=True)
class Fitted:
    """The test set's prompts as fitted: the examples (an input cut where `task.truncate` allows), their
    contexts, each prompt's text and token ids, and the record of what was left out."""

    examples: list[Example]
    contexts: list[Context]
    prompts: list[str]
    encoded: list[list[int]]
    record: PromptFit


class PromptBudget:
    """Fits each example's prompt to `budget` tokens of `tokenizer` (see the module's docstring)."""

    def __init__(
        self,
        template: PromptTemplate,
        tokenizer: Any,
        budget: int,
        truncate: Truncation | None = None,
        places: Mapping[str, str] | None = None,
        budget_key: str = TEST_BUDGET,
        truncate_key: str = "task.truncate",
    ) -> None:
        self.template, self.tokenizer, self.budget = template, tokenizer, budget
        self.truncate, self.places = truncate, places or {}
        self.budget_key, self.truncate_key = budget_key, truncate_key  # the settings an error names

    def fit(
        self, examples: Sequence[Example], contexts: Sequence[Context], reserved: Sequence[int] | None = None
    ) -> Fitted:
        """Each example's prompt fitted, with what was left out counted; `reserved[i]` tokens of the
        budget are kept back from example i's prompt (a training example's response)."""
        reserved = reserved if reserved is not None else [0] * len(examples)
        fitted = [self._fit_one(e, c, self.budget - r) for e, c, r in zip(examples, contexts, reserved, strict=True)]
        counts: Counter[str] = Counter()
        for example, context, (kept, fits, _) in zip(examples, contexts, fitted):
            last = len(fits.passages) - 1
            counts.update(
                prompts_fitted=int(fits != context or kept != example),
                shots_dropped=len(context.shots) - len(fits.shots),
                passages_dropped=len(context.passages) - len(fits.passages),
                passages_trimmed=int(last >= 0 and fits.passages[last].text != context.passages[last].text),
                inputs_truncated=int(kept.input != example.input),
            )
        record = PromptFit(budget_tokens=self.budget, **counts)
        if record.prompts_fitted:
            log.warning(
                "%d of %d prompts were over their budget (%s: %d tokens): %d demonstrations and %d passages left "
                "out, %d passages trimmed, %d inputs cut (task.truncate=%s)",
                record.prompts_fitted, len(fitted), self.budget_key.split(";")[0], self.budget, record.shots_dropped,
                record.passages_dropped, record.passages_trimmed, record.inputs_truncated, self.truncate,
            )  # fmt: skip
        return Fitted(
            examples=[f[0] for f in fitted],
            contexts=[f[1] for f in fitted],
            prompts=[f[2][0] for f in fitted],
            encoded=[f[2][1] for f in fitted],
            record=record,
        )

    def encode(self, example: Example, context: Context) -> tuple[str, list[int]]:
        """The prompt and its token ids."""
        prompt = self.template.render(example, context, self.tokenizer)
        return prompt, list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def _fit_one(
        self, example: Example, context: Context, budget: int
    ) -> tuple[Example, Context, tuple[str, list[int]]]:
        prompt = self.encode(example, context)
        while len(prompt[1]) > budget and context.shots:  # the least similar demonstration first
            context = replace(context, shots=context.shots[:-1])
            prompt = self.encode(example, context)
        while len(prompt[1]) > budget and len(context.passages) > 1:  # the lowest-ranked passage first
            context = replace(context, passages=context.passages[:-1])
            prompt = self.encode(example, context)
        if len(prompt[1]) > budget and context.passages:
            context, prompt = self._trim_passage(example, context, budget)
        if len(prompt[1]) > budget:
            example, prompt = self._cut_input(example, context, len(prompt[1]), budget)
        return example, context, prompt

    def _trim_passage(self, example: Example, context: Context, budget: int) -> tuple[Context, tuple[str, list[int]]]:
        """The context with its one passage cut to the most of its beginning that fits (dropped where
        none does)."""
        passage = context.passages[0]

        def with_text(text: str) -> Context:
            return replace(context, passages=(Passage(passage.id, text, passage.source),))

        kept = self._longest(passage.text, lambda text: self.encode(example, with_text(text))[1], "head", budget)
        if not kept:  # not even its first token fits
            emptied = replace(context, passages=())
            return emptied, self.encode(example, emptied)
        return with_text(kept), self.encode(example, with_text(kept))

    def _cut_input(
        self, example: Example, context: Context, tokens: int, budget: int
    ) -> tuple[Example, tuple[str, list[int]]]:
        if self.truncate is None:
            problem = (
                f"example '{example.id}' alone makes a {tokens}-token prompt (instruction, template and input), over "
                f"the budget of {budget} ({self.budget_key}). Set {self.truncate_key}=head, tail or middle to cut such "
                "inputs to fit, shorten the template, or raise the budget."
            )
            raise DataError(self.places.get(example.id, "task data"), problem)
        kept = self._longest(
            example.input, lambda text: self.encode(replace(example, input=text), context)[1], self.truncate, budget
        )
        if kept is None:
            raise ConfigError(
                "task.template",
                f"the prompt without its input is over the budget of {budget} tokens ({self.budget_key}).",
                "Shorten the instruction or the system message, or raise the budget.",
            )
        cut = replace(example, input=kept)
        return cut, self.encode(cut, context)

    def _longest(self, text: str, encode: Callable[[str], list[int]], keep: Truncation, budget: int) -> str | None:
        """The longest cut of `text` (by its tokens, the part `keep` says) whose prompt fits; None where
        not even an empty one does."""
        try:
            offsets = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)[
                "offset_mapping"
            ]
        except NotImplementedError:  # a slow (Python) tokenizer has no offsets
            raise ConfigError(
                "generator.source",
                "its tokenizer gives no token offsets (a slow tokenizer), which trimming a prompt to its budget needs.",
                "Use a model with a fast tokenizer (tokenizer.json), or shorten the inputs and contexts.",
            ) from None
        low, high, best = 0, len(offsets), None
        while low <= high:  # the prompt's length grows with the tokens kept
            middle = (low + high) // 2
            candidate = _cut(text, offsets, middle, keep)
            if len(encode(candidate)) <= budget:
                best, low = candidate, middle + 1
            else:
                high = middle - 1
        return best


def _cut(text: str, offsets: Sequence[tuple[int, int]], kept: int, keep: Truncation) -> str:
    """`text` cut to `kept` of its tokens (`offsets`: each token's span), the part `keep` says."""
    if kept >= len(offsets):
        return text
    return CUTS[keep](text, offsets, kept) if kept else ""


def _head(text: str, offsets: Sequence[tuple[int, int]], kept: int) -> str:
    return text[: offsets[kept - 1][1]]


def _tail(text: str, offsets: Sequence[tuple[int, int]], kept: int) -> str:
    return text[offsets[len(offsets) - kept][0] :]


def _middle_out(text: str, offsets: Sequence[tuple[int, int]], kept: int) -> str:
    back = kept // 2
    return _head(text, offsets, kept - back) + ELLIPSIS + (_tail(text, offsets, back) if back else "")


CUTS: dict[str, Callable[[str, Sequence[tuple[int, int]], int], str]] = {
    "head": _head,
    "tail": _tail,
    "middle": _middle_out,
}
