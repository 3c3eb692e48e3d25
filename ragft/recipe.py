"""One run: load the task, build contexts, (train an adapter), generate, score, record.

Prompting, few-shot, RAG and their fine-tuned variants are the same pipeline: the context builder
decides what a prompt carries, the adaptation decides whether the generator is trained first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ragft.adapt.methods import check_adaptation, require_4bit_support
from ragft.adapt.plan import Source, Stage, hold_out, instruction_choices, mix, training_stages
from ragft.adapt.sft import build_features, load_adapted, train_adapter
from ragft.config.identity import arm_label, run_key
from ragft.context.shots import ContextBuilder
from ragft.context.sources import RunResources
from ragft.context.template import PromptTemplate
from ragft.data.leakage import check_leakage
from ragft.data.loading import task_from_config
from ragft.errors import ConfigError, build
from ragft.eval.model import EvaluationModels
from ragft.eval.registry import check_metrics, primary_metric, score_predictions
from ragft.eval.testset import TestSet, answer, task_score
from ragft.models.generation import check_fits, encode
from ragft.models.loading import Generator, best_device, load_generator
from ragft.record.cost import PeakMemory, StageTimer, generation_cost, parameter_counts
from ragft.record.provenance import run_info
from ragft.record.run import RunWriter, is_finished, write_table
from ragft.types import Context, Example, Prediction

log = logging.getLogger(__name__)


def prompts_for(
    template: PromptTemplate, examples: Sequence[Example], contexts: Sequence[Context], tokenizer: Any
) -> list[str]:
    return [template.render(e, c, tokenizer) for e, c in zip(examples, contexts)]


def run_experiment_arm(cfg: DictConfig) -> Path:
    """Run the arm that `cfg` describes unless an identical finished run exists; return its folder.

    A reused run keeps the records of when it ran, its leakage check included (the settings it used
    are in its config.yaml)."""
    task = task_from_config(cfg.task)
    template = PromptTemplate.from_config(cfg.task.template)  # template errors fail before any work ...
    builder: ContextBuilder = build(cfg.context.builder, "context.builder")
    retriever_label = cfg.retriever.get("label", "") if cfg.context.get("retrieves") else ""
    arm = cfg.get("run_label") or arm_label(cfg.adaptation.name, cfg.context.name, retriever_label)
    run_dir = Path(cfg.paths.results) / cfg.exp_name / f"{arm}-{run_key(cfg)}"
    if is_finished(run_dir):
        log.info("%s: finished run with this config exists at %s; reusing it", arm, run_dir)
        write_table(run_dir.parent)
        return run_dir
    evaluation = EvaluationModels(cfg.evaluation)
    check_metrics(cfg.task.metrics, task.split("test")[0], evaluation)  # ... and so do metric settings
    other_tests = _other_test_sets(cfg)  # ... and the other test sets a run scores
    if cfg.adaptation.method is not None:  # ... and adaptation settings that cannot work together
        check_adaptation(cfg.adaptation, cfg.training, n_stages=len(training_stages(cfg)))
        _check_training_data(cfg, task)  # ... and training data a stage could not use
    if cfg.adaptation.get("quantization") is not None:
        require_4bit_support(best_device())  # ... and QLoRA where bitsandbytes cannot quantise
    leakage = check_leakage(task, cfg.leakage)  # ... and leaks, where leakage.fail is set
    writer = RunWriter(run_dir)
    try:
        with _log_to(writer.staging / "run.log"):
            started = datetime.now(timezone.utc)
            with PeakMemory() as memory:
                timer = StageTimer()
                metrics, predictions, cost, extras = _execute(
                    cfg, task, builder, template, evaluation, timer, other_tests
                )
            cost.update(memory.record(), stage_s=timer.seconds)
            if "train_peak_cuda_mb" in cost and not cost.get("adapter_reused"):  # training reset the CUDA peak
                cost["peak_cuda_mb"] = max(cost.get("peak_cuda_mb", 0.0), cost["train_peak_cuda_mb"])
            writer.write_json("run.json", run_info(cfg, arm, run_dir.name, started))
            writer.write_text("config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
            writer.write_json("metrics.json", metrics)
            writer.write_json("cost.json", cost)
            writer.write_json("leakage.json", leakage)
            writer.write_predictions(predictions)
            for name, record in extras.items():  # stages.json, evaluate_also.json
                writer.write_json(f"{name}.json", record)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    write_table(run_dir.parent)
    log.info("%s: wrote %s", arm, run_dir)
    return run_dir


def _execute(
    cfg: DictConfig,
    task: Any,
    builder: ContextBuilder,
    template: PromptTemplate,
    evaluation: EvaluationModels,
    timer: StageTimer,
    other_tests: dict[str, TestSet],
) -> tuple[dict, list[Prediction], dict, dict]:
    torch.manual_seed(cfg.seed)
    resources = RunResources(task, cfg.embedder, cfg.retriever, cfg.get("chunking"))
    test = task.split("test")
    with timer.stage("load_generator"):
        generator = _load_base(cfg)
    cost: dict[str, Any] = {
        "base_total_params": parameter_counts(generator.model)["total_params"],
        "generation_batch_size": cfg.generation.batch_size,
    }
    with timer.stage("build_context"):
        contexts = builder.build(test, resources)
        prompts = prompts_for(template, test, contexts, generator.tokenizer)
    cost.update(resources.stats())  # retrieval cost of the test contexts, before training reuses the retriever
    encoded = encode(generator, prompts)  # a prompt too long for the model fails here, before any training
    check_fits(
        [len(e) for e in encoded], [e.id for e in test], cfg.task.generation.max_new_tokens, generator.max_context
    )
    extras: dict[str, Any] = {}
    if cfg.adaptation.method is not None:
        with timer.stage("train"):
            generator, train_stats, stages = _adapt(cfg, task, resources, builder, generator, other_tests, evaluation)
        cost.update(train_stats)
        if len(stages) > 1:
            extras["stages"] = stages
    else:
        cost.update(trainable_params=0, adapter_bytes=0, train_s=0.0)
    with timer.stage("generate"):
        predictions = answer(
            generator,
            test,
            contexts,
            prompts,
            encoded,
            cfg.task.generation.max_new_tokens,
            cfg.generation.batch_size,
            desc=f"generating {len(test)} answers",
        )
    cost.update(
        generation_cost(
            [p.prompt_tokens for p in predictions],
            [p.output_tokens for p in predictions],
            [p.latency_s for p in predictions],
            timer.seconds["generate"],
        )
    )
    with timer.stage("score"):
        metrics = score_predictions(predictions, cfg.task.metrics, seed=cfg.seed, models=evaluation)
    if "stages" in extras:  # the last stage's own test set is the run's
        own = task_score(cfg.task.name, primary_metric(cfg.task), metrics, predictions)
        extras["stages"][-1]["scores"][cfg.task.name] = own
    with timer.stage("evaluate_also"):
        also = {
            name: other_tests[name].score(generator, cfg.generation.batch_size, cfg.seed, evaluation)
            for name in cfg.get("evaluate_also") or {}
        }
    if also:
        extras["evaluate_also"] = also
    return metrics, predictions, cost, extras


def _load_base(cfg: DictConfig) -> Generator:
    """The generator as configured; 4-bit where the adaptation quantises its base (QLoRA)."""
    return load_generator(cfg.generator, cfg.adaptation.get("quantization"))


def _other_test_sets(cfg: DictConfig) -> dict[str, TestSet]:
    """`evaluate_also`'s test sets and, for sequential fine-tuning, each stage's: loaded (and their
    metrics checked) before any work."""
    tests = {name: TestSet.load(name, spec) for name, spec in (cfg.get("evaluate_also") or {}).items()}
    stages = training_stages(cfg) if cfg.adaptation.method is not None else []
    if len(stages) > 1:
        for stage in stages:
            tests[f"stage:{stage.name}"] = TestSet.load(stage.name, stage.test_task.spec)
    return tests


def _adapt(
    cfg: DictConfig,
    task: Any,
    resources: RunResources,
    builder: ContextBuilder,
    generator: Generator,
    other_tests: dict[str, TestSet],
    evaluation: EvaluationModels,
) -> tuple[Generator, dict, list[dict]]:
    """Train every stage in turn, each from the previous stage's saved weights, and return the adapted
    generator, the training cost (summed over stages) and, for a sequence, the untrained model's scores
    on every stage's test set (`stage` None) followed by, per stage, the scores on the test sets of it
    and every earlier stage (the last stage's own score is the run's and is added by the caller)."""
    training = cfg.training
    stages = training_stages(cfg)
    saved, records, history = None, [], []
    if len(stages) > 1:  # the reference row: what the base model scores on each stage before any training
        history.append({"stage": None, "train_s": 0.0, "scores": {}})
        _score_stages(cfg, stages, generator, other_tests, evaluation, history[-1])
    for i, stage in enumerate(stages):
        if i > 0:  # training changed the base in place: start the next stage from a fresh one
            generator = _load_base(cfg)
        features, validation = _stage_features(cfg, training, stage, builder, generator.tokenizer, task, resources)
        record = train_adapter(generator, cfg.adaptation.method, training, features, validation, start_from=saved)
        generator.release()  # what serves is reloaded from the saved weights: two copies would skew peak memory
        saved = record.adapter_dir
        records.append(record.stats)
        if len(stages) > 1:
            log.info("stage %d/%d (%s) trained in %.0f s", i + 1, len(stages), stage.name, record.stats["train_s"])
            history.append({"stage": stage.name, "train_s": record.stats["train_s"], "scores": {}})
        if i < len(stages) - 1:
            _score_stages(cfg, stages[: i + 1], _adapted(cfg, saved), other_tests, evaluation, history[-1])
    generator = _adapted(cfg, saved)
    if len(stages) > 1:
        _score_stages(cfg, stages[:-1], generator, other_tests, evaluation, history[-1])
    return generator, _summed_training(records), history


def _adapted(cfg: DictConfig, saved: Path) -> Generator:
    """A fresh base with the saved training applied, as it is served."""
    return load_adapted(_load_base(cfg), cfg.adaptation.method, saved, merge=cfg.adaptation.merge_for_inference)


def _score_stages(
    cfg: DictConfig,
    stages: Sequence[Stage],
    generator: Generator,
    other_tests: dict[str, TestSet],
    evaluation: EvaluationModels,
    into: dict,
) -> None:
    """Score `generator` (the training so far) on the test sets of `stages`, zero-shot."""
    for stage in stages:
        test = other_tests[f"stage:{stage.name}"]
        into["scores"][stage.name] = test.score(generator, cfg.generation.batch_size, cfg.seed, evaluation)


def _summed_training(records: list[dict]) -> dict:
    """The last stage's record, with time, tokens, examples and steps summed over every stage, peak
    memory the highest of any stage, and `adapter_reused` only where every stage was reused."""
    stats = dict(records[-1])
    if len(records) > 1:
        for key in ("train_s", "train_tokens", "train_examples", "train_steps"):
            stats[key] = sum(r[key] for r in records)
        for key in ("train_peak_rss_mb", "train_peak_cuda_mb"):
            if key in stats:
                stats[key] = max(r.get(key, 0.0) for r in records)
        stats["adapter_reused"] = all(r["adapter_reused"] for r in records)
        stats["train_tokens_per_s"] = stats["train_tokens"] / stats["train_s"]
        stats["train_stages"] = len(records)
    return stats


def _stage_features(
    cfg: DictConfig,
    training: DictConfig,
    stage: Stage,
    builder: ContextBuilder,
    tokenizer: Any,
    run_task: Any,
    run_resources: RunResources,
) -> tuple[list[dict], list[dict] | None]:
    """The stage's training features, its sources mixed by weight, and its validation features (the
    sources' `training.validation.split`, or a held-out share of the training features), if any."""
    parts, validation = {}, []
    for source in stage.sources:
        source_task, source_resources = _source_data(cfg, source, run_task, run_resources)
        template = PromptTemplate.from_config(source.spec.template)
        parts[source.name] = _features(
            source_task.split("train"), template, builder, source_resources, tokenizer, training
        )
        split = training.validation.get("split")
        if split:
            validation += _features(
                _validation_split(source_task, split), template, builder, source_resources, tokenizer, training
            )
        elif training.validation.get("holdout"):
            parts[source.name], held = hold_out(parts[source.name], training.validation.holdout, training.seed)
            validation += held
    mixed = mix(parts, {s.name: s.weight for s in stage.sources}, stage.size, training.seed)
    return mixed, validation or None


def _check_training_data(cfg: DictConfig, run_task: Any) -> None:
    """Fail before any work on training data a stage could not use: a source task that does not load,
    a validation split it lacks, a held-out share that leaves nothing to train on, an empty mix part
    (the features themselves are built stage by stage, later)."""
    validation = cfg.training.validation
    for stage in training_stages(cfg):
        parts = {}
        for source in stage.sources:
            task = _source_task(cfg, source, run_task)
            parts[source.name] = task.split("train")
            if validation.get("split"):
                _validation_split(task, validation.split)
            elif validation.get("holdout"):
                parts[source.name], _ = hold_out(parts[source.name], validation.holdout, cfg.training.seed)
        mix(parts, {s.name: s.weight for s in stage.sources}, stage.size, cfg.training.seed)


def _source_data(cfg: DictConfig, source: Source, run_task: Any, run_resources: RunResources) -> tuple[Any, Any]:
    """A training source's task and the resources its contexts draw on (its own corpus: an adapter
    trained on protocol version 1 reads version-1 passages while training)."""
    task = _source_task(cfg, source, run_task)
    if task is run_task:
        return run_task, run_resources
    return task, RunResources(task, cfg.embedder, cfg.retriever, cfg.get("chunking"))


def _source_task(cfg: DictConfig, source: Source, run_task: Any) -> Any:
    """A training source's task data: the run's own, already loaded, or its task config's."""
    return run_task if source.spec == cfg.task else task_from_config(source.spec)


def _validation_split(task: Any, split: str) -> list[Example]:
    if not task.splits.get(split):
        raise ConfigError(
            "training.validation.split",
            f"task '{task.name}' has no '{split}' examples (splits: {sorted(task.splits)}).",
            "Name one of its splits, or hold out a share of train with training.validation.holdout.",
        )
    return task.split(split)


def _features(
    examples: Sequence[Example],
    template: PromptTemplate,
    builder: ContextBuilder,
    resources: RunResources,
    tokenizer: Any,
    training: DictConfig,
) -> list[dict]:
    """Training features, each prompt built with the arm's own context (so lora_rag trains with retrieved
    passages) without the example itself, and with one of the template's phrasings where
    `training.instruction_mix` is set."""
    contexts = builder.build(examples, resources, exclude_self=True)
    templates = [template] * len(examples)
    if training.get("instruction_mix"):
        choices = instruction_choices(len(examples), len(template.instructions), training.seed)
        templates = [template.with_instruction(template.instructions[c]) for c in choices]
    prompts = [t.render(e, c, tokenizer) for t, e, c in zip(templates, examples, contexts)]
    return build_features(
        tokenizer, prompts, [e.reference for e in examples], [e.id for e in examples], training.max_length
    )


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
