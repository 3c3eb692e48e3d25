"""Answering test examples, and scoring a generator on other tasks' test sets.

The run's own test set is answered with the arm's contexts (pipeline.py). `TestSet` scores the same
generator zero-shot on another task's test set: the general-knowledge set after fine-tuning
(catastrophic forgetting, `evaluate_also`), or each earlier stage's test set in sequential
fine-tuning. Zero-shot, because these measure what the weights know.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from ragft.context.budget import PromptBudget, prompt_budget
from ragft.context.template import PromptTemplate
from ragft.data.loading import task_from_config
from ragft.eval.registry import check_metrics, primary_metric, score_predictions
from ragft.models.generation import AnsweredBatches, Batching, generate
from ragft.models.loading import Generator
from ragft.record.run import Scores, TaskScore
from ragft.retrieval.base import document_ranking
from ragft.types import Context, Example, Prediction, TaskData


def answer(
    generator: Generator,
    examples: Sequence[Example],
    contexts: Sequence[Context],
    prompts: Sequence[str],
    encoded: Sequence[list[int]],
    max_new_tokens: int,
    batching: Batching,
    desc: str,
    kept: AnsweredBatches | None = None,
) -> list[Prediction]:
    """Greedy answers to the encoded prompts, as predictions ready to score (`kept`: see `generate`)."""
    ids = [e.id for e in examples]
    generations = generate(generator, encoded, ids, max_new_tokens, batching, desc=desc, kept=kept)
    return [
        Prediction(
            example=e,
            prompt=p,
            output=g.text,
            retrieved=document_ranking(c.passages),
            ranking=c.ranking,
            passages=tuple(x.text for x in c.passages),
            prompt_tokens=g.prompt_tokens,
            output_tokens=g.output_tokens,
            padded_prompt_tokens=g.padded_prompt_tokens,
        )
        for e, c, p, g in zip(examples, contexts, prompts, generations)
    ]


def scored_answers(
    generator: Generator,
    examples: Sequence[Example],
    encoded: Sequence[list[int]],
    max_new_tokens: int,
    batching: Batching,
    metric: str,
    settings: Mapping[str, Any] | None,
    seed: int,
    models: Any,
    task: TaskData,
) -> list[Prediction]:
    """Greedy answers to the encoded prompts of `examples`, each scored on `metric` (its `settings`)."""
    prompts = generator.tokenizer.batch_decode(encoded)
    predictions = answer(
        generator, examples, [Context()] * len(examples), prompts, encoded, max_new_tokens, batching,
        desc=f"answering {len(examples)} {task.name} examples",
    )  # fmt: skip
    score_predictions(predictions, {metric: settings}, seed, models, task)
    return predictions


def task_score(task: str, metric: str, scores: Scores, predictions: Sequence[Prediction]) -> TaskScore:
    """How a run records a task's score as a stage or another test set: its primary `metric`'s summary
    (mean, interval, n) and each example's score (id -> score, for paired comparisons later)."""
    per_example = {p.example.id: p.scores[metric] for p in predictions if metric in p.scores}
    return TaskScore(task, metric, scores[metric], per_example)


@dataclass
class TestSet:
    """Another task's test set, loaded and checked before any work, scored on its primary metric."""

    name: str
    spec: DictConfig
    examples: list[Example]
    template: PromptTemplate
    metric: str
    task: TaskData | None = None  # its data, for metrics that read it (field_accuracy)

    __test__ = False  # not a pytest test class

    @classmethod
    def load(cls, name: str, spec: DictConfig) -> TestSet:
        task = task_from_config(spec, required=("test",))
        metric = primary_metric(spec)
        examples = task.split("test")
        check_metrics({metric: spec.metrics[metric]}, examples[0], task=task)
        return cls(name, spec, examples, PromptTemplate.from_config(spec.template), metric, task)

    def score(self, generator: Generator, batching: Batching, seed: int, models: Any = None) -> TaskScore:
        """Zero-shot answers, each prompt fitted to the model's window as the run's own are (its task's
        `truncate` cuts an input that alone does not fit), scored on the primary metric."""
        max_new_tokens = self.spec.generation.max_new_tokens
        budget = prompt_budget(None, generator.max_context, max_new_tokens)
        places = self.task.places if self.task else None
        fitter = PromptBudget(
            self.template, generator.tokenizer, budget, self.spec.get("truncate"), places,
            budget_key=f"the model's window less its task's generation.max_new_tokens ({self.name})",
            truncate_key=f"evaluate_also.{self.name}.truncate",
        )  # fmt: skip
        fitted = fitter.fit(self.examples, [Context()] * len(self.examples))
        predictions = answer(
            generator,
            fitted.examples,
            fitted.contexts,
            fitted.prompts,
            fitted.encoded,
            max_new_tokens,
            batching,
            desc=f"scoring {self.name} ({len(self.examples)} examples)",
        )
        scores = score_predictions(predictions, {self.metric: self.spec.metrics[self.metric]}, seed, models, self.task)
        return task_score(self.spec.name, self.metric, scores, predictions)
