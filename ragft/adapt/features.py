"""Training features: a prompt's token ids followed by its response's, labelled so that only the response
(and its end token) is learned; `fitted_features` first fits each example to `training.max_length` as test
prompts are fitted to the model's window (ragft.context.budget)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ragft.context.budget import PromptBudget, Truncation
from ragft.context.template import PromptTemplate
from ragft.errors import ConfigError
from ragft.record.cost import PromptFit
from ragft.types import Context, Example

log = logging.getLogger(__name__)
IGNORE = -100  # the label of a position no loss is computed at


def feature(prompt_ids: list[int], response_ids: list[int]) -> dict[str, list[int]]:
    """One training feature: the prompt's labels masked, the response's kept."""
    return {"input_ids": prompt_ids + response_ids, "labels": [IGNORE] * len(prompt_ids) + response_ids}


def prompt_of(feature: dict[str, list[int]]) -> list[int]:
    """A training feature's prompt ids (the positions whose labels are masked: they lead)."""
    return feature["input_ids"][: feature["labels"].count(IGNORE)]


def build_features(
    tokenizer: Any, prompts: Sequence[str], responses: Sequence[str], ids: Sequence[str], max_length: int
) -> list[dict[str, list[int]]]:
    """Tokenise pairs; labels mask the prompt so that only the response (and its end token) is learned."""
    features = []
    for prompt, response, example_id in zip(prompts, responses, ids):
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        response_ids = tokenizer(response + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        length = len(prompt_ids) + len(response_ids)
        if length > max_length:
            raise ConfigError(
                "training.max_length",
                f"training example '{example_id}' has {length} tokens, more than {max_length}.",
                "Raise max_length or use a shorter context (fewer shots or passages).",
            )
        features.append(feature(prompt_ids, response_ids))
    return features


def fitted_features(
    examples: Sequence[Example],
    contexts: Sequence[Context],
    templates: Sequence[PromptTemplate],
    tokenizer: Any,
    max_length: int,
    truncate: Truncation | None = None,
    places: dict[str, str] | None = None,
) -> tuple[list[dict[str, list[int]]], PromptFit]:
    """Training features whose prompt and response fit `max_length` tokens, and what fitting them left out.

    Each prompt is fitted as test prompts are (ragft.context.budget) to `max_length` less its response:
    demonstrations and passages dropped, the last passage trimmed, and the input cut only where
    `task.truncate` says (else an example that cannot fit is an error naming it). With `task.truncate`
    set, a response too long to leave its prompt min(prompt, max_length / 2) tokens is cut at its tail
    (its end-of-text token with it), as a sequence-level truncation would."""
    responses = [tokenizer(e.reference + tokenizer.eos_token, add_special_tokens=False)["input_ids"] for e in examples]
    too_long = next((i for i, r in enumerate(responses) if len(r) >= max_length), None)
    if truncate is None and too_long is not None:
        raise ConfigError(
            "training.max_length",
            f"the reference of training example '{examples[too_long].id}' alone has {len(responses[too_long])} "
            f"tokens, leaving no room for its prompt within {max_length}.",
            "Raise training.max_length, or set task.truncate (head, tail or middle) to cut such examples to fit.",
        )
    kept: list[list[int]] = list(responses)
    fit = PromptFit(budget_tokens=max_length)
    prompt_ids: list[list[int]] = [[] for _ in examples]
    for template in dict.fromkeys(templates):  # a fitter per template: one, or one per instruction phrasing
        fitter = PromptBudget(template, tokenizer, max_length, truncate, places, budget_key="training.max_length")
        rows = [i for i, t in enumerate(templates) if t == template]
        if truncate is not None:
            for i in rows:
                prompt_room = min(len(fitter.encode(examples[i], contexts[i])[1]), max_length // 2)
                kept[i] = responses[i][: max_length - prompt_room]
        fitted = fitter.fit([examples[i] for i in rows], [contexts[i] for i in rows], [len(kept[i]) for i in rows])
        for i, encoded in zip(rows, fitted.encoded):
            prompt_ids[i] = encoded
        fit = fit.plus(fitted.record)
    fit = replace(fit, responses_cut=sum(len(k) < len(r) for k, r in zip(kept, responses)))
    if fit.responses_cut:
        log.warning(
            "%d of %d training responses cut at their tail to fit training.max_length=%d (task.truncate=%s)",
            fit.responses_cut, len(examples), max_length, truncate,
        )  # fmt: skip
    return [feature(p, r) for p, r in zip(prompt_ids, kept)], fit
