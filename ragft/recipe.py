"""One run: task -> contexts -> (adapt) -> generate -> score -> record.

Prompting, few-shot, RAG and their fine-tuned variants are the same recipe: the context builder decides
what a prompt carries, the adaptation decides whether the generator is trained first. `prepare` is the
one place that reads the whole config: it loads and checks everything a run needs before any work and
hands each step its own typed piece; `execute` is the recipe itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ragft import processes
from ragft.adapt.majority import fixed_answer_loader
from ragft.adapt.methods import check_adaptation, preference_training
from ragft.adapt.plan import training_stages
from ragft.adapt.stages import Adaptation, Preference
from ragft.config.components import buildable
from ragft.config.identity import run_folder, run_identity
from ragft.config.schema import validate
from ragft.context.budget import PromptBudget, Truncation, prompt_budget
from ragft.context.sources import ContextSources
from ragft.context.template import PromptTemplate
from ragft.data.leakage import check_leakage
from ragft.data.loading import task_from_config
from ragft.errors import ConfigError, build
from ragft.eval.model import EvaluationModels
from ragft.eval.registry import check_metrics, primary_metric, score_predictions
from ragft.eval.testset import TestSet, answer, scored_answers, task_score
from ragft.models.generation import AnsweredBatches, Batching, batch1_latencies, latency_sample
from ragft.models.loading import Generator, best_device, load_generator
from ragft.models.quantization import require_4bit_support
from ragft.plugins import load_plugins
from ragft.record.cost import (
    Cost,
    GenerationCost,
    PeakMemory,
    StageTimer,
    TrainingCost,
    parameter_counts,
)
from ragft.record.provenance import finished_at, started_now
from ragft.record.run import (
    ResumableRunWriter,
    RunFailure,
    RunIdentity,
    RunRecord,
    RunWork,
    Scores,
    StageScores,
    TaskScore,
    check_writable,
    is_finished,
    run_lock,
    work_folder,
)
from ragft.record.table import write_table
from ragft.types import Example, Prediction, TaskData

log = logging.getLogger(__name__)


@dataclass
class Arm:
    """What one run works with, loaded and checked before any work."""

    task: TaskData
    test: list[Example]
    template: PromptTemplate
    builder: Any  # a context builder (ragft.context)
    sources: ContextSources
    load_base: Callable[[], Generator]  # the generator as configured (4-bit for QLoRA)
    adaptation: Adaptation | None
    metrics: DictConfig  # task.metrics
    primary_metric: str
    max_new_tokens: int
    max_prompt_tokens: int | None  # the prompt budget; None: the generator's window less max_new_tokens
    truncate: Truncation | None  # how an input that alone is over the budget is cut; None: it is an error
    batching: Batching
    latency_sample: int  # test examples answered alone to measure latency at batch 1 (0: none)
    seed: int
    evaluation: EvaluationModels
    other_tests: dict[str, TestSet] = field(default_factory=dict)  # evaluate_also, and stage:<name> for a sequence
    leakage: dict[str, Any] = field(default_factory=dict)

    def score_on(self, generator: Generator, names: Sequence[str], prefix: str = "") -> dict[str, TaskScore]:
        """`generator`'s zero-shot scores on the named other test sets."""
        return {
            name: self.other_tests[prefix + name].score(generator, self.batching, self.seed, self.evaluation)
            for name in names
        }


@dataclass
class Outcome:
    predictions: list[Prediction]
    scores: Scores
    cost: Cost
    other_tests: dict[str, TaskScore]
    stages: list[StageScores]


def run_experiment_arm(cfg: DictConfig) -> Path:
    """Run the arm that `cfg` describes unless an identical finished run exists; return its folder.

    A reused run keeps the records of when it ran, its leakage check included. A run that fails after
    its checks is recorded as failed (stage and error) and raised again; the next identical job re-runs it.
    One process at a time works on a run (an identical job started meanwhile waits, then reuses it); an
    attempt that is interrupted or killed leaves its training checkpoints and answered batches, and the
    same command resumes from them. In a multi-process run (`torchrun`, `accelerate launch`) every
    process trains and answers its share of the test set; the main one alone scores and records.
    """
    load_plugins(cfg.get("plugins"))  # a user's metrics register before anything looks them up
    validate(cfg)
    processes.start()
    identity = run_identity(cfg, primary_metric(cfg.task))
    run_dir = run_folder(cfg, identity)
    check_writable(run_dir.parent, "paths.results")
    if _reused(identity, run_dir):
        return run_dir
    arm = prepare(cfg)  # a run refused by its checks writes nothing, not even its lock
    with run_lock(run_dir) if processes.is_main() else nullcontext():
        if _reused(identity, run_dir):  # an identical job finished it while this one waited
            return run_dir
        if not processes.is_main():
            processes.wait_for_everyone()  # the main process has opened the work folder
            execute(arm, StageTimer(), RunWork(work_folder(run_dir)))
            return run_dir
        _record_run(arm, identity, run_dir, OmegaConf.to_yaml(cfg, resolve=True))
    log.info("%s: wrote %s", identity.arm, run_dir)
    return run_dir


def _reused(identity: RunIdentity, run_dir: Path) -> bool:
    """Whether a finished run with this config exists (the main process's answer, in every process)."""
    if not processes.from_main(is_finished(run_dir)):
        return False
    log.info("%s: finished run with this config exists at %s; reusing it", identity.arm, run_dir)
    if processes.is_main():
        write_table(run_dir.parent)
    return True


def _record_run(arm: Arm, identity: RunIdentity, run_dir: Path, config_text: str) -> None:
    """Execute the arm in the run's work folder and record it: finished, or failed with its stage and
    error; an interrupted attempt records nothing and keeps its work for the next one."""
    writer, timer, started = ResumableRunWriter(run_dir, config_text), StageTimer(), started_now()
    processes.wait_for_everyone()
    record = RunRecord(identity, "failed", provenance={}, leakage=arm.leakage)
    try:
        with _log_to(writer.staging / "run.log"), PeakMemory("run") as memory:
            outcome = execute(arm, timer, writer.work)
        assert outcome is not None  # the main process's
        outcome.cost.memory, outcome.cost.stage_s = memory.record(), timer.seconds
        writer.write_predictions(outcome.predictions)
        record.status, record.scores, record.cost = "finished", outcome.scores, outcome.cost
        record.other_tests, record.stages = outcome.other_tests, outcome.stages
    except Exception as err:
        record.failure = RunFailure(timer.current or "prepare", type(err).__name__, str(err))
        raise
    except BaseException:  # interrupted: nothing is recorded, the work stays for the next attempt
        writer.abort()
        raise
    finally:
        if record.status == "finished" or record.failure:
            record.provenance = finished_at(started, resumed=writer.resumed)
            writer.commit(record)
            write_table(run_dir.parent)


def execute(arm: Arm, timer: StageTimer, work: RunWork | None = None) -> Outcome | None:
    """The recipe: contexts for the test set, the generator (trained first where the arm adapts it),
    answers, scores, and what each step cost. `work`: where training checkpoints and answered batches
    are kept for a later attempt. The other processes of a multi-process run stop after the answers
    (None)."""
    torch.manual_seed(arm.seed)
    with timer.stage("load_generator"):
        generator = arm.load_base()
    base_params = parameter_counts(generator.model)["total_params"]
    with timer.stage("build_context"):  # a prompt that cannot fit the model fails here, before any training
        budget = prompt_budget(arm.max_prompt_tokens, generator.max_context, arm.max_new_tokens)
        fitter = PromptBudget(arm.template, generator.tokenizer, budget, arm.truncate, arm.task.places)
        fitted = fitter.fit(arm.test, arm.builder.build(arm.test, arm.sources))
        test, contexts, prompts, encoded = fitted.examples, fitted.contexts, fitted.prompts, fitted.encoded
    retrieval = arm.sources.cost()  # the test contexts' retrieval, before training reuses the retriever
    training: TrainingCost | None = None
    stages: list[StageScores] = []
    if arm.adaptation is not None:
        with timer.stage("train"):
            scorer = partial(arm.score_on, prefix="stage:")
            generator, training, stages = arm.adaptation.train(generator, scorer, work.checkpoints if work else None)
    kept = AnsweredBatches(work.answers, [e.id for e in test]) if work else None
    with PeakMemory("generation") as generation_memory, timer.stage("generate"):
        desc = f"generating {len(test)} answers"
        predictions = answer(generator, test, contexts, prompts, encoded, arm.max_new_tokens, arm.batching, desc, kept)
    with timer.stage("evaluate_also"):  # answered by every process of a multi-process run, as the test set is
        also = arm.score_on(generator, [n for n in arm.other_tests if not n.startswith("stage:")])
    if not processes.is_main():  # the other processes of a multi-process run train and answer, nothing more
        return None
    with timer.stage("latency"):  # requests answered alone, timed apart from the batched pass
        sample = latency_sample(len(encoded), arm.latency_sample, arm.seed)
        latencies = batch1_latencies(generator, encoded, sample, arm.max_new_tokens)
    with timer.stage("score"):
        scores = score_predictions(predictions, arm.metrics, seed=arm.seed, models=arm.evaluation, task=arm.task)
    if stages:  # the last stage's own test set is the run's
        stages[-1].scores[arm.task.name] = task_score(arm.task.name, arm.primary_metric, scores, predictions)
    generation = GenerationCost.measured(
        arm.batching.size,
        [p.prompt_tokens for p in predictions],
        [p.output_tokens for p in predictions],
        timer.seconds["generate"] + (kept.earlier_seconds if kept else 0.0),  # with an earlier attempt's batches
        latencies,
        generation_memory.record(),
        padded_prompt_tokens=[p.padded_prompt_tokens for p in predictions],
    )
    cost = Cost(base_params, training, retrieval, generation, prompt_fit=fitted.record)
    return Outcome(predictions, scores, cost, also, stages)


def prepare(cfg: DictConfig) -> Arm:
    """Load the task and every setting of the run, failing on anything that cannot work before any work
    is done: template, metrics, other test sets, adaptation and training data, 4-bit support, leaks."""
    task = task_from_config(cfg.task)
    test = answered_split(task, cfg.tune.get("split"))
    template = PromptTemplate.from_config(cfg.task.template)
    builder = build(buildable(cfg.context.builder, "context.builder"), "context.builder")
    evaluation = EvaluationModels(cfg.evaluation)
    check_metrics(cfg.task.metrics, test[0], evaluation, task)
    sources = _sources(cfg, task)
    builder.check(sources)  # e.g. a RAG context without a retriever fails here, before any work
    load_base: Callable[[], Generator] = partial(load_generator, cfg.generator, cfg.adaptation.get("quantization"))
    if cfg.adaptation.get("answer") is not None:  # a floor served instead of the model (adaptation=majority)
        load_base = fixed_answer_loader(
            build(cfg.adaptation.answer, "adaptation.answer"), load_base, task.split("train")
        )
    adaptation = _adaptation(cfg, task, builder, sources, load_base, evaluation)
    if cfg.adaptation.get("quantization") is not None:
        require_4bit_support(best_device())
    return Arm(
        task=task,
        test=test,
        template=template,
        builder=builder,
        sources=sources,
        load_base=load_base,
        adaptation=adaptation,
        metrics=cfg.task.metrics,
        primary_metric=primary_metric(cfg.task),
        max_new_tokens=cfg.task.generation.max_new_tokens,
        max_prompt_tokens=cfg.context.builder.get("max_prompt_tokens"),
        truncate=cfg.task.get("truncate"),
        batching=_batching(cfg),
        latency_sample=cfg.generation.latency_sample,
        seed=cfg.seed,
        evaluation=evaluation,
        other_tests=_other_test_sets(cfg, adaptation),
        leakage=check_leakage(task, cfg.leakage),
    )


def answered_split(task: TaskData, split: str | None) -> list[Example]:
    """The examples a run answers and scores: the test split, or for a tuning trial (`tune.split`) another
    split — never test, which no choice may read."""
    if split is None:
        return task.split("test")
    if split == "test":
        raise ConfigError(
            "tune.split", "is the test split; tuning chooses settings on another split.", "Use validation."
        )
    if not task.splits.get(split):
        raise ConfigError("tune.split", f"'{split}' is not a split of the task's data (it has {sorted(task.splits)}).")
    return task.split(split)


def _adaptation(
    cfg: DictConfig,
    task: TaskData,
    builder: Any,
    sources: ContextSources,
    load_base: Callable[[], Generator],
    evaluation: EvaluationModels,
) -> Adaptation | None:
    """The arm's training, its settings and data checked; None where the arm trains nothing."""
    if cfg.adaptation.method is None:
        return None
    stages = training_stages(cfg)
    check_adaptation(cfg.adaptation, cfg.training, n_stages=len(stages))

    def sources_for(other: TaskData) -> ContextSources:  # a task's own corpus: v1 passages for a v1 adapter
        if other is task:
            return sources
        return _sources(cfg, other)

    adaptation = Adaptation(
        method=cfg.adaptation.method,
        merge_for_inference=cfg.adaptation.merge_for_inference,
        training=cfg.training,
        stages=stages,
        run_task=task,
        load_base=load_base,
        builder=builder,
        sources_for=sources_for,
        preference=_preference(cfg, task, evaluation),
    )
    adaptation.check_data()
    return adaptation


def _preference(cfg: DictConfig, task: TaskData, evaluation: EvaluationModels) -> Preference | None:
    """The arm's preference stage (adaptation=dpo, orpo), its pairs answered and scored as test answers are."""
    settings = cfg.adaptation.get("preference")
    if settings is None:
        return None
    objective = build(settings.objective, "adaptation.preference.objective")
    metric = primary_metric(cfg.task)
    answer = partial(
        scored_answers, max_new_tokens=cfg.task.generation.max_new_tokens, batching=_batching(cfg), metric=metric,
        settings=cfg.task.metrics[metric], seed=cfg.seed, models=evaluation, task=task,
    )  # fmt: skip
    return Preference(
        objective=settings.objective,
        name=objective.name,
        after_sft=objective.after_sft,
        source=build(settings.source, "adaptation.preference.source"),
        training=preference_training(cfg.training, settings.get("training")),
        metric=metric,
        answer=answer,
    )


def _batching(cfg: DictConfig) -> Batching:
    generation = cfg.generation
    return Batching(generation.batch_size, generation.get("max_padding"), generation.get("max_batch_tokens"))


def _sources(cfg: DictConfig, task: TaskData) -> ContextSources:
    """What the task's contexts draw on; a retriever (and chunking) only where the context retrieves."""
    if not cfg.context.get("retrieves"):
        return ContextSources.from_config(task, None, None)
    return ContextSources.from_config(task, cfg.get("retriever"), cfg.get("chunking"))


def _other_test_sets(cfg: DictConfig, adaptation: Adaptation | None) -> dict[str, TestSet]:
    """`evaluate_also`'s test sets and, for sequential fine-tuning, each stage's (`stage:<name>`)."""
    tests = {name: TestSet.load(name, spec) for name, spec in (cfg.get("evaluate_also") or {}).items()}
    if adaptation is not None and len(adaptation.stages) > 1:
        for stage in adaptation.stages:
            tests[f"stage:{stage.name}"] = TestSet.load(stage.name, stage.test_task.spec)
    return tests


@contextmanager
def _log_to(path: Path) -> Iterator[None]:
    """Copy every log record of the run into the run's own log file."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
