"""Metrics that run a model: embedding similarity to the reference and an optional model-as-judge.

Their models come from the `evaluation` config, not from the arm, so that every arm of an experiment
is scored by the same models (an arm that swaps its retriever's embedder is still scored alike).
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
from omegaconf import DictConfig

from ragft.errors import ConfigError, build
from ragft.eval.registry import register_metric
from ragft.types import Prediction

if TYPE_CHECKING:
    from ragft.retrieval.embeddings import Embedder

JUDGE_SYSTEM = "You are a strict grader of answers."
JUDGE_RUBRIC = (
    "Rate how well the answer matches the reference answer for the input, from 1 (wrong or unrelated) "
    "to 5 (states every fact of the reference and nothing false). Reply with the number only.\n\n"
    "Input: {input}\n\nReference answer: {reference}\n\nAnswer to rate: {output}"
)


class EvaluationModels:
    """The `evaluation` config's models, each loaded on first use and kept for the rest of the run."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg

    @cached_property
    def embedder(self) -> Embedder:
        """The `evaluation.embedder` component (its model is loaded when it first embeds)."""
        why = "embedding_similarity needs an embedder."
        return build(self._model_config("embedder", why, "embedder@evaluation.embedder=minilm"), "evaluation.embedder")

    @cached_property
    def judge(self) -> Any:
        from ragft.models.loading import load_generator

        why = "llm_judge needs a judge model, and none is configured (it is off by default)."
        return load_generator(self._model_config("judge", why, "generator@evaluation.judge=smollm2"))

    def _model_config(self, key: str, why: str, override: str) -> DictConfig:
        if self.cfg.get(key) is None:
            raise ConfigError(f"evaluation.{key}", why, f"Select one, e.g. `{override}`.")
        return self.cfg[key]


@register_metric("embedding_similarity", batched=True)
def embedding_similarity(predictions: Sequence[Prediction], models: EvaluationModels) -> list[dict[str, float]]:
    """Cosine similarity of output and reference embeddings (`evaluation.embedder`), floored at 0."""
    embedder = models.embedder
    outputs = embedder.embed([p.output for p in predictions], cache=False)
    references = embedder.embed([p.example.reference for p in predictions], cache=False)
    cosines = np.clip((outputs * references).sum(axis=1), 0.0, 1.0)  # both are L2-normalised
    return [{"embedding_similarity": float(c)} for c in cosines]


@register_metric("llm_judge", batched=True)
def llm_judge(
    predictions: Sequence[Prediction],
    models: EvaluationModels,
    rubric: str = JUDGE_RUBRIC,
    system: str = JUDGE_SYSTEM,
    max_new_tokens: int = 4,
    batch_size: int = 16,
) -> list[dict[str, float]]:
    """The judge model's 1-5 grade of each output against its reference, scaled to [0, 1].

    `rubric` may use {input}, {reference} and {output}. The grade is the first number 1-5 standing alone in the judge's
    greedy reply; `llm_judge_parsed` records whether there was one, and unparsed replies get no grade
    (so `llm_judge`'s n can be smaller than the test set).
    """
    from ragft.context.template import chat_prompt
    from ragft.models.generation import Batching, encode, generate

    _check_rubric(rubric)
    judge = models.judge
    prompts = [
        chat_prompt(
            [
                {"role": "system", "content": system},
                {
                    "role": "user",
                    "content": rubric.format(input=p.example.input, reference=p.example.reference, output=p.output),
                },
            ],
            judge.tokenizer,
        )
        for p in predictions
    ]
    replies = generate(
        judge,
        encode(judge, prompts),
        [p.example.id for p in predictions],
        max_new_tokens,
        batching=Batching(batch_size),
        desc=f"judging {len(prompts)} answers",
    )
    return [_grade(reply.text) for reply in replies]


def _check_rubric(rubric: str) -> None:
    used = {field for _, field, _, _ in string.Formatter().parse(rubric) if field is not None}
    unknown = used - {"input", "reference", "output"}
    if unknown or "output" not in used:
        raise ValueError(f"the rubric must use {{output}} and only {{input}}, {{reference}}, {{output}}; got {used}")


def _grade(reply: str) -> dict[str, float]:
    match = re.search(r"(?<![\d.])[1-5](?![\d.]*\d)", reply)  # a lone digit: not the 1 of "10" or "1.5"
    if match is None:
        return {"llm_judge_parsed": 0.0}
    return {"llm_judge": (int(match.group()) - 1) / 4, "llm_judge_parsed": 1.0}
