"""Training an arm's generator in its stages, each from the previous stage's saved weights.

The recipe hands over typed pieces, not the config: the adaptation and training settings, the plan
(`ragft.adapt.plan.training_stages`), a loader of the base model, the context builder and where a
task's contexts come from. What comes back is the adapted generator as it is served, the training cost
summed over the stages and, for a sequence of stages, the scores on every stage's test set after each.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ragft.adapt.features import fitted_features, prompt_of
from ragft.adapt.pairs import PairSource
from ragft.adapt.plan import Source, Stage, hold_out, instruction_choices, mix
from ragft.adapt.preference import pair_features
from ragft.adapt.sft import load_adapted, train_adapter
from ragft.context.template import PromptTemplate
from ragft.data.loading import task_from_config
from ragft.errors import ConfigError
from ragft.models.loading import Generator
from ragft.record.cost import PreferenceCost, PromptFit, TrainingCost
from ragft.record.run import StageScores, TaskScore
from ragft.types import Example, Prediction, TaskData

log = logging.getLogger(__name__)

# Scores a generator zero-shot on the named stages' test sets (stage name -> score).
StageScorer = Callable[[Generator, Sequence[str]], dict[str, TaskScore]]


@dataclass(frozen=True)
class Adaptation:
    """Everything a run's training needs, each piece its own."""

    method: DictConfig  # adaptation.method: a peft config or a `FullFineTuning` node
    merge_for_inference: bool
    training: DictConfig
    stages: Sequence[Stage]
    run_task: TaskData
    load_base: Callable[[], Generator]  # a fresh base model, as the run loads it (4-bit for QLoRA)
    builder: Any  # the arm's context builder: training prompts carry the arm's own context
    sources_for: Callable[[TaskData], Any]  # the context sources of a task (the run's own are reused)
    preference: Preference | None = None  # a preference stage (adaptation=dpo, orpo)

    def check_data(self) -> None:
        """Fail before any work on training data a stage could not use: a source task that does not
        load, a validation split it lacks, a held-out share that leaves nothing to train on, an empty
        mix part (the features themselves are built stage by stage, later)."""
        validation = self.training.validation
        for stage in self.stages:
            parts = {}
            for source in stage.sources:
                task = self._task(source)
                parts[source.name] = task.split("train")
                if validation.get("split"):
                    validation_split(task, validation.split)
                elif validation.get("holdout"):
                    parts[source.name], _ = hold_out(parts[source.name], validation.holdout, self.training.seed)
            mix(parts, {s.name: s.weight for s in stage.sources}, stage.size, self.training.seed)

    def train(
        self, generator: Generator, score_stages: StageScorer, checkpoints: Path | None = None
    ) -> tuple[Generator, TrainingCost, list[StageScores]]:
        """Train every stage in turn and return the adapted generator, the summed training cost and, for
        a sequence, the untrained model's scores on every stage's test set (`stage` None) followed by,
        per stage, the scores on the test sets of it and every earlier stage (the last stage's own
        score is the run's and is added by the caller). `checkpoints`: where each stage's training saves
        its state and an interrupted one resumes (a finished stage is reused from the adapter cache)."""
        sequence = len(self.stages) > 1
        saved: Path | None = None
        costs: list[TrainingCost] = []
        history = [StageScores(None, 0.0, score_stages(generator, self._names()))] if sequence else []
        supervised = self.stages if self.preference is None or self.preference.after_sft else []
        for i, stage in enumerate(supervised):
            if i > 0:  # training changed the base in place: start the next stage from a fresh one
                generator = self.load_base()
            features, validation, fit = self.stage_features(stage, generator.tokenizer)
            record = train_adapter(
                generator, self.method, self.training, features, validation, start_from=saved, checkpoints=checkpoints
            )
            generator.release()  # what serves is reloaded from the saved weights: two copies would skew peak memory
            saved = record.adapter_dir
            costs.append(replace(record.cost, prompt_fit=fit))
            if sequence:
                log.info("stage %d/%d (%s) trained in %.0f s", i + 1, len(self.stages), stage.name, record.cost.train_s)
                history.append(StageScores(stage.name, record.cost.train_s))
            if i < len(self.stages) - 1:
                history[-1].scores.update(score_stages(self.adapted([saved]), self._names(i + 1)))
        chain = [saved] if saved else []
        if self.preference is not None:
            base = self.load_base() if supervised else generator
            trained, cost = self.preference.train(self, base, saved, checkpoints)
            chain.append(trained)
            costs.append(replace(cost, adapter_bytes=sum(c.adapter_bytes for c in costs) + cost.adapter_bytes))
        generator = self.adapted(chain)
        if sequence:
            history[-1].scores.update(score_stages(generator, self._names(len(self.stages) - 1)))
        return generator, TrainingCost.summed(costs), history

    def adapted(self, chain: Sequence[Path]) -> Generator:
        """A fresh base with the saved trainings applied in turn (an SFT adapter, then a preference
        adapter trained on top of it merged), as it is served."""
        generator = self.load_base()
        for i, saved in enumerate(chain):
            merge = self.merge_for_inference or i < len(chain) - 1  # what a later training started from is merged
            generator = load_adapted(generator, self.method, saved, merge=merge)
        return generator

    def stage_features(self, stage: Stage, tokenizer: Any) -> tuple[list[dict], list[dict] | None, PromptFit]:
        """The stage's training features, its sources mixed by weight, its validation features (the
        sources' `training.validation.split`, or a held-out share of the training features), if any, and
        what fitting the training examples to `training.max_length` left out."""
        parts: dict[str, list[dict]] = {}
        validation: list[dict] = []
        fit = PromptFit(budget_tokens=self.training.max_length)
        settings = self.training.validation
        for source in stage.sources:
            task = self._task(source)
            features = partial(self.features, spec=source.spec, task=task, tokenizer=tokenizer)
            parts[source.name], source_fit = features(task.split("train"))
            fit = fit.plus(source_fit)
            if settings.get("split"):
                validation += features(validation_split(task, settings.split))[0]
            elif settings.get("holdout"):
                parts[source.name], held = hold_out(parts[source.name], settings.holdout, self.training.seed)
                validation += held
        mixed = mix(parts, {s.name: s.weight for s in stage.sources}, stage.size, self.training.seed)
        return mixed, validation or None, fit

    def features(
        self, examples: Sequence[Example], spec: DictConfig, task: TaskData, tokenizer: Any
    ) -> tuple[list[dict], PromptFit]:
        """Training features of a task (`spec`: its config), each prompt built with the arm's own context
        (so lora_rag trains with retrieved passages) without the example itself, with one of the
        template's phrasings where `training.instruction_mix` is set, and fitted to `training.max_length`."""
        template = PromptTemplate.from_config(spec.template)
        contexts = self.builder.build(examples, self.sources_for(task), exclude_self=True)
        templates = [template] * len(examples)
        if self.training.get("instruction_mix"):
            choices = instruction_choices(len(examples), len(template.instructions), self.training.seed)
            templates = [template.with_instruction(template.instructions[c]) for c in choices]
        return fitted_features(
            examples, contexts, templates, tokenizer, self.training.max_length, spec.get("truncate"), task.places
        )

    def _task(self, source: Source) -> TaskData:
        """A training source's task data: the run's own, already loaded, or its task config's."""
        return self.run_task if source.spec == self.stages[-1].test_task.spec else task_from_config(source.spec)

    def _names(self, upto: int | None = None) -> list[str]:
        return [s.name for s in self.stages[:upto]]


# Greedy answers of a generator to prompts (token ids) of the given examples, scored on the primary metric
TrainAnswerer = Callable[[Generator, Sequence[Example], Sequence[list[int]]], list[Prediction]]


@dataclass(frozen=True)
class Preference:
    """A preference stage (`adaptation.preference`): where its pairs come from, its objective and its
    training settings (`training` with `adaptation.preference.training` over it)."""

    objective: DictConfig  # a `ragft.adapt.preference` objective node: DPO, ORPO
    name: str  # the objective's: dpo, orpo
    after_sft: bool  # trains on top of the supervised stage (DPO); else from the base alone (ORPO)
    source: PairSource
    training: DictConfig
    metric: str  # the task's primary metric, which an answer must score below `source.threshold` on
    answer: TrainAnswerer

    def train(
        self, adaptation: Adaptation, base: Generator, sft: Path | None, checkpoints: Path | None
    ) -> tuple[Path, TrainingCost]:
        """Build the pairs, then train the preference adapter on `base` (a fresh base model; for DPO the
        SFT adapter saved in `sft` is merged into it first); its saved folder and cost."""
        started = time.perf_counter()
        task, spec = adaptation.run_task, adaptation.stages[-1].test_task.spec
        answered: list[Prediction] = []

        def fitted(examples: Sequence[Example]) -> list[dict]:
            return adaptation.features(examples, spec, task, base.tokenizer)[0]

        def own_answers() -> list[Prediction]:
            examples = task.split("train")
            answering = adaptation.adapted([sft]) if sft else base
            prompts = [prompt_of(f) for f in fitted(examples)]
            answered.extend(self.answer(answering, examples, prompts))
            if answering is not base:
                answering.release()
            return answered

        pairs = self.source.pairs(task, self.metric, own_answers)
        if not pairs:
            scored = f" of the {len(answered)}" if answered else ""
            raise ConfigError(
                "adaptation.preference.source.threshold",
                f"no answer{scored} ({self.source.describe()}) scored below {self.source.threshold} on "
                f"{self.metric}: nothing to prefer the reference over.",
                "Raise the threshold, or give your own pairs (pairs@adaptation.preference.source=pairs_file).",
            )
        features = pair_features(pairs, fitted, base.tokenizer, self.training.max_length)
        pairs_s = time.perf_counter() - started
        log.info("preference: %d pairs (%s) built in %.0f s", len(pairs), self.source.describe(), pairs_s)
        record = train_adapter(
            base, adaptation.method, self.training, features, start_from=sft, checkpoints=checkpoints,
            objective=self.objective,
        )  # fmt: skip
        base.release()
        rejected = [p.rejected_score for p in pairs if p.rejected_score is not None]
        cost = PreferenceCost(
            objective=self.name,
            source=self.source.describe(),
            pairs=len(pairs),
            pair_ids=[p.example.id for p in pairs],
            answers_scored=len(answered) or None,
            threshold=self.source.threshold,
            mean_rejected_score=sum(rejected) / len(rejected) if rejected else None,
            pairs_s=pairs_s,
        )
        return record.adapter_dir, replace(record.cost, preference=cost)


def validation_split(task: TaskData, split: str) -> list[Example]:
    if not task.splits.get(split):
        raise ConfigError(
            "training.validation.split",
            f"task '{task.name}' has no '{split}' examples (splits: {sorted(task.splits)}).",
            "Name one of its splits, or hold out a share of train with training.validation.holdout.",
        )
    return task.split(split)
